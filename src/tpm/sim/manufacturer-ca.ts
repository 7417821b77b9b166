// The software TPM's "manufacturer": a CA an installation creates once, which signs the EK
// certificate of every software TPM it manufactures. Its certificate is what a trustlaunch
// CA configures as an endorsement root for `sim` nodes (as a real CA would configure a
// TPM vendor's root). Layout of a manufacturing directory:
//   manufacturer-ca.pem      the CA certificate (public, 0644)
//   manufacturer-ca.key      its PKCS#8 private key (0600)
//   tpm-state.json           one software TPM's state (0600, secret: holds the EK and AK keys)
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { readSecretFile, writeFileAtomic, writeSecretFile } from '../../crypto/files.js';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, exportPrivateKeyPem, importPrivateKeyPem } from '../../crypto/keys.js';
import { createSelfSignedCa, issueCertificate, parseCertificate, type Certificate } from '../../crypto/x509.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { EkAlgorithm } from '../auth-device.js';
import { objectName } from '../crypto/name.js';
import { manufactureTpm, type EkCertificateIssuer, type ManufactureOptions } from './manufacture.js';
import { FileStateStore } from './store.js';

export const MANUFACTURER_FILES = {
  certificate: 'manufacturer-ca.pem',
  privateKey: 'manufacturer-ca.key',
  state: 'tpm-state.json',
} as const;

export interface ManufacturerCa {
  readonly certificate: Certificate;
  readonly privateKey: KeyObject;
}

/** Loads the manufacturer CA of `dir`, creating it (ECDSA P-256, self-signed) when the directory has none. */
export async function ensureManufacturerCa(dir: string, commonName = 'trustlaunch software TPM manufacturer CA'): Promise<ManufacturerCa> {
  const certPath = join(dir, MANUFACTURER_FILES.certificate);
  const keyPath = join(dir, MANUFACTURER_FILES.privateKey);
  if (existsSync(certPath) && existsSync(keyPath)) {
    return { certificate: parseCertificate(readFileSync(certPath, 'utf8')), privateKey: importPrivateKeyPem((await readSecretFile(keyPath)).toString('utf8')) };
  }
  if (existsSync(certPath) || existsSync(keyPath)) {
    throw new TrustlaunchError('CONFLICT', `${dir} holds only half of a manufacturer CA (${MANUFACTURER_FILES.certificate} / ${MANUFACTURER_FILES.privateKey})`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPair('ecdsa-p256');
  const certificate = await createSelfSignedCa({ commonName, privateKey });
  await writeSecretFile(keyPath, exportPrivateKeyPem(privateKey));
  await writeFileAtomic(certPath, certificate.pem, 0o644);
  return { certificate, privateKey };
}

/** An EK certificate issuer (profile 'ek', TCG SAN attributes) signing with `ca`. */
export function ekIssuer(ca: ManufacturerCa): EkCertificateIssuer {
  return async (request) => {
    const cert = await issueCertificate({
      issuer: ca,
      subjectPublicKey: request.publicKey,
      commonName: `EK ${request.algorithm} ${objectName(request.publicArea).subarray(2, 10).toString('hex')}`,
      profile: 'ek',
      tpm: request.tpm,
    });
    return cert.der;
  };
}

export interface ManufacturedTpm {
  readonly statePath: string;
  readonly caCertificate: Certificate;
  /** TPMT_PUBLIC of each EK. */
  readonly endorsementKeys: ReadonlyMap<EkAlgorithm, Uint8Array>;
}

/**
 * Manufactures a software TPM in `dir`: the manufacturer CA (created once, then reused)
 * and a fresh state file with EKs and EK certificates. An existing state is replaced only
 * with `overwrite` (like swtpm_setup --overwrite): a TPM is not remanufactured by accident.
 */
export async function manufactureSoftwareTpm(
  dir: string,
  options: Omit<ManufactureOptions, 'issueEkCertificate'> & { readonly overwrite?: boolean; readonly statePath?: string } = {},
): Promise<ManufacturedTpm> {
  const ca = await ensureManufacturerCa(dir);
  const statePath = options.statePath ?? join(dir, MANUFACTURER_FILES.state);
  if (existsSync(statePath) && options.overwrite !== true) {
    throw new TrustlaunchError('CONFLICT', `${statePath} already holds a TPM; pass overwrite to remanufacture it`);
  }
  const endorsementKeys = await manufactureTpm(new FileStateStore(statePath), { ...options, issueEkCertificate: ekIssuer(ca) });
  return { statePath, caCertificate: ca.certificate, endorsementKeys };
}
