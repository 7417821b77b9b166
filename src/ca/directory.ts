// The CA directory (docs/ca.md "Directory"): created once by `ca init`, read by `ca serve`.
// Private keys and the admin token are 0600 files written atomically (crypto/files.ts);
// they are read back with readSecretFile, which refuses a file others could read.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TrustlaunchError } from '../protocol/errors.js';
import { sha256 } from '../protocol/digest.js';
import { exportPrivateKeyPem, generateKeyPair, importPrivateKeyPem } from '../crypto/keys.js';
import { readSecretFile, writeFileAtomic, writeSecretFile } from '../crypto/files.js';
import { receiptAlgorithmForKey, receiptKeyId, toJwks, type ReceiptAlgorithm } from '../crypto/receipts.js';
import { formatSshPublicKey } from '../crypto/ssh-keys.js';
import { issueTlsServerCertificate } from '../crypto/tls.js';
import { createSelfSignedCa, parseCertificate, parseCertificates, type Certificate } from '../crypto/x509.js';
import { generateToken, hashToken } from '../http/auth.js';
import { CA_CONFIG_FORMAT, CA_FILES, CaConfigSchema, DEFAULTS, ListenSchema, readCaConfig, type CaConfig } from './config.js';
import { identityFingerprint, type CaFingerprint, type CaIdentity } from './identity.js';

/** What nodes keep in device NV (NV_INDEX_MAX): the root certificate's DER must fit. */
export const MAX_ROOT_DER_BYTES = 2048;
const TLS_RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;
const MAX_ENDORSEMENT_FILES = 64;
const MAX_ENDORSEMENT_FILE_BYTES = 256 * 1024;

export interface InitCaOptions {
  /** Receipt signature algorithm (default ES256). */
  readonly alg?: ReceiptAlgorithm;
  /** Extra TLS names (DNS names or IP addresses) besides localhost, 127.0.0.1 and ::1. */
  readonly names?: readonly string[];
  /** The receipts' `iss`; default `trustlaunch-ca-<12 hex of the receipt key's SPKI hash>`. */
  readonly issuer?: string;
  readonly listen?: string;
  readonly receiptLifetimeSeconds?: number;
  readonly evidenceSkewSeconds?: number;
  /** Replace an existing CA (new keys, new fingerprint). */
  readonly force?: boolean;
}

export interface InitCaResult {
  readonly dir: string;
  readonly config: CaConfig;
  readonly identity: CaIdentity;
  readonly fingerprint: CaFingerprint;
  /** Shown once; stored only as its hash (and in the 0600 file admin.token). */
  readonly adminToken: string;
}

/** A CA directory loaded for serving. */
export interface CaMaterial {
  readonly dir: string;
  readonly config: CaConfig;
  readonly receiptKey: KeyObject;
  readonly receiptAlgorithm: ReceiptAlgorithm;
  readonly receiptKeyId: string;
  readonly sshCaKey: KeyObject;
  readonly sshCaPublicKey: string;
  readonly root: { readonly certificate: Certificate; readonly privateKey: KeyObject };
  readonly tls: { readonly chain: readonly Certificate[]; readonly privateKey: KeyObject };
  readonly identity: CaIdentity;
  readonly fingerprint: CaFingerprint;
}

const path = (dir: string, file: string): string => join(dir, file);

function buildIdentity(issuer: string, receiptPublic: KeyObject, kid: string, sshCaPublicKey: string, root: Certificate): CaIdentity {
  return { issuer, receiptKeys: toJwks([{ key: receiptPublic, kid }]) as CaIdentity['receiptKeys'], sshCaKey: sshCaPublicKey, tlsRoot: root.pem };
}

function checkNames(names: readonly string[]): void {
  for (const n of names) {
    if (!/^[A-Za-z0-9.:-]{1,253}$/.test(n)) throw new TrustlaunchError('MALFORMED_REQUEST', `--name ${JSON.stringify(n.slice(0, 80))} is not a DNS name or IP address`);
  }
}

/** Creates a CA in `dir`: keys, root and TLS certificates, admin token, ca.json, identity.json. */
export async function initCaDirectory(dir: string, opts: InitCaOptions = {}): Promise<InitCaResult> {
  const existing = Object.values(CA_FILES).filter((f) => f !== CA_FILES.endorsementRoots && f !== CA_FILES.database && existsSync(path(dir, f)));
  if (existing.length > 0 && opts.force !== true) {
    throw new TrustlaunchError('CONFLICT', `${dir} already holds a CA (${existing.join(', ')}); pass --force to replace its keys`);
  }
  const alg = opts.alg ?? 'ES256';
  const names = [...new Set(opts.names ?? [])];
  checkNames(names);
  const listen = opts.listen ?? DEFAULTS.listen;
  if (!ListenSchema.safeParse(listen).success) throw new TrustlaunchError('MALFORMED_REQUEST', `--listen ${JSON.stringify(listen.slice(0, 80))}: expected HOST:PORT`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await mkdir(path(dir, CA_FILES.endorsementRoots), { recursive: true, mode: 0o755 });

  const receipt = generateKeyPair(alg === 'ES256' ? 'ecdsa-p256' : 'ed25519');
  const kid = receiptKeyId(receipt.publicKey);
  const ssh = generateKeyPair('ed25519');
  const sshCaPublicKey = formatSshPublicKey(ssh.publicKey);
  const rootKey = generateKeyPair('ecdsa-p256');
  const issuer = opts.issuer ?? `trustlaunch-ca-${sha256(createPublicKey(receipt.privateKey).export({ format: 'der', type: 'spki' })).toString('hex').slice(0, 12)}`;
  const root = await createSelfSignedCa({ commonName: `${issuer} root`, privateKey: rootKey.privateKey });
  if (root.der.length > MAX_ROOT_DER_BYTES) throw new TrustlaunchError('INTERNAL', `the root certificate has ${root.der.length} bytes, more than a device NV index holds`);
  const tls = await issueTlsServerCertificate({ issuer: { certificate: root, privateKey: rootKey.privateKey }, commonName: issuer, names });
  const adminToken = generateToken('adm');

  const config: CaConfig = {
    format: CA_CONFIG_FORMAT,
    issuer,
    receiptAlgorithm: alg,
    receiptKeyId: kid,
    listen,
    names,
    receiptLifetimeSeconds: opts.receiptLifetimeSeconds ?? DEFAULTS.receiptLifetimeSeconds,
    evidenceSkewSeconds: opts.evidenceSkewSeconds ?? DEFAULTS.evidenceSkewSeconds,
    registrationTtlSeconds: DEFAULTS.registrationTtlSeconds,
    enrollmentTokenTtlSeconds: DEFAULTS.enrollmentTokenTtlSeconds,
    adminTokenHash: hashToken(adminToken),
    paths: {
      receiptKey: CA_FILES.receiptKey,
      sshCaKey: CA_FILES.sshCaKey,
      sshCaPublicKey: CA_FILES.sshCaPublicKey,
      rootCertificate: CA_FILES.rootCertificate,
      rootKey: CA_FILES.rootKey,
      tlsCertificate: CA_FILES.tlsCertificate,
      tlsKey: CA_FILES.tlsKey,
      endorsementRoots: CA_FILES.endorsementRoots,
      database: CA_FILES.database,
      adminToken: CA_FILES.adminToken,
      identity: CA_FILES.identity,
    },
    createdAt: new Date().toISOString(),
  };
  // Validate what we are about to write with the same schema the reader uses.
  const checked = CaConfigSchema.safeParse(config);
  if (!checked.success) throw new TrustlaunchError('MALFORMED_REQUEST', `CA configuration: ${checked.error.issues.map((i) => i.message).join('; ')}`);

  const identity = buildIdentity(issuer, receipt.publicKey, kid, sshCaPublicKey, root);
  await writeSecretFile(path(dir, CA_FILES.receiptKey), exportPrivateKeyPem(receipt.privateKey));
  await writeSecretFile(path(dir, CA_FILES.sshCaKey), exportPrivateKeyPem(ssh.privateKey));
  await writeSecretFile(path(dir, CA_FILES.rootKey), exportPrivateKeyPem(rootKey.privateKey));
  await writeSecretFile(path(dir, CA_FILES.tlsKey), exportPrivateKeyPem(tls.privateKey));
  await writeSecretFile(path(dir, CA_FILES.adminToken), `${adminToken}\n`);
  await writeFileAtomic(path(dir, CA_FILES.sshCaPublicKey), `${sshCaPublicKey} ${issuer}\n`);
  await writeFileAtomic(path(dir, CA_FILES.rootCertificate), root.pem);
  await writeFileAtomic(path(dir, CA_FILES.tlsCertificate), tls.chain.map((c) => c.pem).join(''));
  await writeFileAtomic(path(dir, CA_FILES.identity), `${JSON.stringify(identity, null, 2)}\n`);
  // ca.json last: its presence says the directory is complete.
  await writeFileAtomic(path(dir, CA_FILES.config), `${JSON.stringify(config, null, 2)}\n`);
  return { dir, config, identity, fingerprint: identityFingerprint(identity), adminToken };
}

async function readPrivateKey(file: string): Promise<KeyObject> {
  return importPrivateKeyPem((await readSecretFile(file, { maxBytes: 64 * 1024 })).toString('utf8'));
}

/** Re-issues the TLS certificate when it expires within 30 days or lacks a configured name. */
async function ensureTls(dir: string, config: CaConfig, root: CaMaterial['root']): Promise<CaMaterial['tls']> {
  const chainPath = path(dir, config.paths.tlsCertificate);
  const keyPath = path(dir, config.paths.tlsKey);
  const chain = parseCertificates(await readFile(chainPath, 'utf8'));
  const leaf = chain[0];
  const names = new Set([...(leaf?.dnsNames ?? []), ...(leaf?.ipAddresses ?? [])]);
  const fresh = leaf !== undefined && leaf.notAfter.getTime() - Date.now() > TLS_RENEW_BEFORE_MS && config.names.every((n) => names.has(n));
  const signedByRoot = leaf !== undefined && leaf.canonicalIssuer === root.certificate.canonicalSubject && leaf.authorityKeyId === root.certificate.subjectKeyId;
  if (fresh && signedByRoot) return { chain, privateKey: await readPrivateKey(keyPath) };
  const tls = await issueTlsServerCertificate({ issuer: root, commonName: config.issuer, names: config.names });
  await writeSecretFile(keyPath, exportPrivateKeyPem(tls.privateKey));
  await writeFileAtomic(chainPath, tls.chain.map((c) => c.pem).join(''));
  return { chain: tls.chain, privateKey: tls.privateKey };
}

/** Reads a CA directory for serving (every private file must be 0600). */
export async function loadCaDirectory(dir: string): Promise<CaMaterial> {
  const config = await readCaConfig(path(dir, CA_FILES.config));
  const receiptKey = await readPrivateKey(path(dir, config.paths.receiptKey));
  const receiptAlgorithm = receiptAlgorithmForKey(receiptKey);
  if (receiptAlgorithm !== config.receiptAlgorithm) throw new TrustlaunchError('MALFORMED_KEY', `the receipt key signs ${receiptAlgorithm}, ca.json says ${config.receiptAlgorithm}`);
  const receiptPublic = createPublicKey(receiptKey);
  const sshCaKey = await readPrivateKey(path(dir, config.paths.sshCaKey));
  if (sshCaKey.asymmetricKeyType !== 'ed25519') throw new TrustlaunchError('MALFORMED_KEY', 'the SSH CA key must be Ed25519');
  const sshCaPublicKey = formatSshPublicKey(createPublicKey(sshCaKey));
  const root = { certificate: parseCertificate(await readFile(path(dir, config.paths.rootCertificate), 'utf8')), privateKey: await readPrivateKey(path(dir, config.paths.rootKey)) };
  if (!root.certificate.publicKey.equals(createPublicKey(root.privateKey))) throw new TrustlaunchError('MALFORMED_KEY', 'the root key does not belong to the root certificate');
  const tls = await ensureTls(dir, config, root);
  const identity = buildIdentity(config.issuer, receiptPublic, config.receiptKeyId, sshCaPublicKey, root.certificate);
  return {
    dir,
    config,
    receiptKey,
    receiptAlgorithm,
    receiptKeyId: config.receiptKeyId,
    sshCaKey,
    sshCaPublicKey,
    root,
    tls,
    identity,
    fingerprint: identityFingerprint(identity),
  };
}

/** The admin token of a CA directory (for the admin commands run on the CA's machine). */
export async function readAdminToken(dir: string, file: string = CA_FILES.adminToken): Promise<string> {
  return (await readSecretFile(path(dir, file), { maxBytes: 1024 })).toString('utf8').trim();
}

/**
 * The endorsement roots: every certificate in every `*.pem` file of `endorsement-roots/`,
 * each a trust anchor for EK chains. Read at each registration, so adding a file takes
 * effect without a restart.
 */
export async function loadEndorsementRoots(dir: string, sub: string = CA_FILES.endorsementRoots): Promise<Certificate[]> {
  const rootsDir = path(dir, sub);
  let files: string[];
  try {
    files = (await readdir(rootsDir)).filter((f) => f.endsWith('.pem')).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const roots: Certificate[] = [];
  for (const f of files.slice(0, MAX_ENDORSEMENT_FILES)) {
    const file = path(rootsDir, f);
    const info = await stat(file);
    if (!info.isFile() || info.size > MAX_ENDORSEMENT_FILE_BYTES) continue;
    roots.push(...parseCertificates(await readFile(file, 'utf8')));
  }
  return roots;
}

/** Copies the CA certificate(s) of a PEM file into `endorsement-roots/`; returns the file name. */
export async function addEndorsementRoot(dir: string, file: string): Promise<{ file: string; certificates: Certificate[] }> {
  const info = await stat(file);
  if (!info.isFile() || info.size > MAX_ENDORSEMENT_FILE_BYTES) throw new TrustlaunchError('MALFORMED_CERTIFICATE', `${file} is not a PEM file of reasonable size`);
  const certificates = parseCertificates(await readFile(file, 'utf8'));
  const first = certificates[0];
  if (first === undefined) throw new TrustlaunchError('MALFORMED_CERTIFICATE', `${file} holds no certificate`);
  for (const c of certificates) {
    if (c.basicConstraints?.ca !== true) throw new TrustlaunchError('MALFORMED_CERTIFICATE', `${c.subject} is not a CA certificate (basicConstraints CA:TRUE)`);
  }
  const config = await readCaConfig(path(dir, CA_FILES.config));
  const rootsDir = path(dir, config.paths.endorsementRoots);
  await mkdir(rootsDir, { recursive: true, mode: 0o755 });
  const name = `${first.sha256Fingerprint.slice(7, 23)}.pem`;
  await writeFileAtomic(path(rootsDir, name), certificates.map((c) => c.pem).join(''));
  return { file: name, certificates };
}
