// Manufacturing a software TPM: a fresh state with endorsement keys from the TCG default
// templates, persisted at their standard handles, each EK certificate written into its NV
// index (TCG EK Credential Profile §2.2.1.5) as the platform: TPMA_NV_PLATFORMCREATE and
// write-locked for good (TPMA_NV_WRITEDEFINE), as a vendor's provisioning leaves them.
import type { KeyObject } from 'node:crypto';
import { createPublicKey } from 'node:crypto';
import { EK_CERT_NV_INDEX, type EkAlgorithm } from '../auth-device.js';
import { TPM_RH } from '../constants.js';
import { EK_HANDLE, EK_TEMPLATES } from '../templates.js';
import { TpmEngine } from './engine.js';
import type { StateStore } from './store.js';

export interface EkCertificateRequest {
  readonly algorithm: EkAlgorithm;
  /** The EK public key (SubjectPublicKeyInfo of the certificate). */
  readonly publicKey: KeyObject;
  /** TPMT_PUBLIC of the EK. */
  readonly publicArea: Uint8Array;
  /** TPM attributes for the certificate's SAN in TCG form: "id:" + 8 hex digits for manufacturer and version. */
  readonly tpm: { readonly manufacturer: string; readonly model: string; readonly version: string };
}

/** Issues the DER EK certificate for one EK (the manufacturer CA's job). */
export type EkCertificateIssuer = (request: EkCertificateRequest) => Promise<Uint8Array>;

export interface ManufactureOptions {
  readonly issueEkCertificate: EkCertificateIssuer;
  /** Default: RSA-2048 and ECC P-256, the two low-range templates. */
  readonly algorithms?: readonly EkAlgorithm[];
  /** TCG vendor id string (4 characters in TPM_PT_MANUFACTURER); default "TLSW". */
  readonly manufacturer?: string;
  readonly model?: string;
  readonly firmwareVersion?: bigint;
}

export const DEFAULT_FIRMWARE_VERSION = 0x2026_0001_0000_0001n;

/** Creates a new TPM state in `store` (overwriting whatever was there) and returns its EK public areas. */
export async function manufactureTpm(store: StateStore, options: ManufactureOptions): Promise<ReadonlyMap<EkAlgorithm, Uint8Array>> {
  const manufacturer = options.manufacturer ?? 'TLSW';
  const firmwareVersion = options.firmwareVersion ?? DEFAULT_FIRMWARE_VERSION;
  const engine = await TpmEngine.create(store, { manufacturer, firmwareVersion });
  await engine.startup();
  const out = new Map<EkAlgorithm, Uint8Array>();
  for (const algorithm of options.algorithms ?? ['rsa2048', 'ecc-p256']) {
    const ek = await engine.createPersistent(TPM_RH.ENDORSEMENT, EK_TEMPLATES[algorithm], EK_HANDLE[algorithm]);
    const der = await options.issueEkCertificate({
      algorithm,
      publicKey: createPublicKey(ek.privateKey),
      publicArea: ek.publicBytes,
      tpm: {
        manufacturer: `id:${Buffer.from(manufacturer.padEnd(4, ' ').slice(0, 4), 'latin1').toString('hex').toUpperCase()}`,
        model: options.model ?? 'trustlaunch-sim',
        // TPM_PT_FIRMWARE_VERSION_1: the high 32 bits of the firmware version.
        version: `id:${(firmwareVersion >> 32n).toString(16).padStart(8, '0').toUpperCase()}`,
      },
    });
    const index = EK_CERT_NV_INDEX[algorithm];
    await engine.nvDefine(index, { size: der.length, platformCreate: true, writeDefine: true });
    await engine.nvWrite(index, der);
    await engine.nvWriteLock(index);
    out.set(algorithm, ek.publicBytes);
  }
  await engine.shutdown();
  return out;
}
