// OpenSSH host certificates (OpenSSH PROTOCOL.certkeys) signed by the CA's Ed25519 SSH
// CA key; never ssh-rsa. sshpk assembles them, node:crypto signs. Parsing and verification are our own and
// strict, over the exact bytes that were signed: sshpk re-serialises before checking a
// signature and ignores trailing bytes, which a verifier must not do.
//
// Verification steps, each a HOST_CERT_INVALID `reason`:
//   malformed         the line or blob is not a certificate we accept
//   wrong-ca          the signature key is not the pinned CA key
//   bad-signature     the signature does not verify over the signed bytes
//   not-a-host-certificate   a user certificate
//   not-yet-valid / expired  outside [valid after, valid before)
//   critical-option   a critical option (none is defined for host certificates)
//   principal         no principals, or the expected host name is not among them
//   key-mismatch      the certified key is not the host key presented
import { createPublicKey, randomBytes, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import sshpk from 'sshpk';
import { TrustlaunchError, isTrustlaunchError } from '../protocol/errors.js';
import { sshFingerprint, type SshFingerprint } from './fingerprints.js';
import { spkiDer } from './keys.js';
import { SshReader, formatSshPublicKey, parseSshPublicKey, parseSshPublicKeyBlob, sshString, type SshKeyType } from './ssh-keys.js';

export type HostCertificateFailure =
  | 'malformed'
  | 'wrong-ca'
  | 'bad-signature'
  | 'not-a-host-certificate'
  | 'not-yet-valid'
  | 'expired'
  | 'critical-option'
  | 'principal'
  | 'key-mismatch';

const CERT_TYPES: Readonly<Record<string, SshKeyType>> = {
  'ssh-ed25519-cert-v01@openssh.com': 'ssh-ed25519',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com': 'ecdsa-sha2-nistp256',
};
const SSH2_CERT_TYPE_USER = 1;
const SSH2_CERT_TYPE_HOST = 2;
/** OpenSSH's "forever" for valid before. */
const FOREVER = 0xffff_ffff_ffff_ffffn;
const MAX_LINE_CHARS = 8192;
const MAX_PRINCIPALS = 256;

export interface HostCertificate {
  /** e.g. ssh-ed25519-cert-v01@openssh.com */
  readonly certType: string;
  /** The certified key and its plain OpenSSH line (`type base64`). */
  readonly publicKey: KeyObject;
  readonly publicKeyLine: string;
  readonly serial: bigint;
  /** 1 user, 2 host (verifyHostCertificate requires host). */
  readonly kind: 'user' | 'host';
  readonly keyId: string;
  readonly principals: readonly string[];
  /** Inclusive start and exclusive end (OpenSSH semantics); "forever" is the largest Date. */
  readonly validAfter: Date;
  readonly validBefore: Date;
  readonly criticalOptions: readonly string[];
  readonly extensions: readonly string[];
  /** The signing CA key and its OpenSSH fingerprint (what `ssh-keygen -L` calls "Signing CA"). */
  readonly caPublicKey: KeyObject;
  readonly caFingerprint: SshFingerprint;
  readonly comment: string | undefined;
  /** @internal the signed bytes and signature, for verifyHostCertificate. */
  readonly signed: { readonly bytes: Buffer; readonly signatureType: string; readonly signature: Buffer };
}

function invalid(reason: HostCertificateFailure, message: string): TrustlaunchError {
  return new TrustlaunchError('HOST_CERT_INVALID', message, { detail: { reason } });
}

// --- issuing -------------------------------------------------------------------------

export interface IssueHostCertificateOptions {
  /** The CA's Ed25519 private key. */
  readonly caPrivateKey: KeyObject;
  /** The host's OpenSSH public key line (ssh-ed25519 or ecdsa-sha2-nistp256). */
  readonly hostKey: string;
  /** Host names the certificate is valid for (at least one). */
  readonly principals: readonly string[];
  readonly keyId: string;
  /** 64-bit serial; random by default. */
  readonly serial?: bigint;
  readonly validAfter: Date;
  readonly validBefore: Date;
  readonly comment?: string;
}

function serialBytes(serial: bigint | undefined): Buffer {
  const out = Buffer.alloc(8);
  if (serial === undefined) return randomBytes(8);
  if (serial < 0n || serial > FOREVER) throw new TypeError('an SSH certificate serial is a uint64');
  out.writeBigUInt64BE(serial);
  return out;
}

/** sshpk's openssh certificate format, as it is at run time (its bundled types mis-describe signAsync's use here). */
interface OpenSshCertFormat {
  signAsync(cert: sshpk.Certificate, signer: (blob: Buffer, done: (err: Error | undefined, signature: sshpk.Signature) => void) => void, done: (err?: Error) => void): void;
}

/**
 * Issues an OpenSSH host certificate line (`…-cert-v01@openssh.com base64 [comment]`).
 * sshpk assembles the certificate; node:crypto makes the Ed25519 signature (sshpk's own
 * pure-JS Ed25519 took ~20 ms per certificate, this ~0.1 ms).
 */
export function issueHostCertificate(opts: IssueHostCertificateOptions): string {
  const caKey = opts.caPrivateKey;
  if (caKey.type !== 'private' || caKey.asymmetricKeyType !== 'ed25519') throw new TypeError('the SSH CA key must be an Ed25519 private key');
  if (opts.principals.length === 0 || opts.principals.length > MAX_PRINCIPALS) throw new TypeError(`a host certificate names 1..${MAX_PRINCIPALS} principals`);
  if (opts.keyId.length === 0 || opts.keyId.length > 256 || /[\r\n]/.test(opts.keyId)) throw new TypeError('keyId must be 1..256 characters on one line');
  if (opts.validBefore.getTime() <= opts.validAfter.getTime()) throw new TypeError('validBefore must be later than validAfter');
  const host = parseSshPublicKey(opts.hostKey);
  const subjects = opts.principals.map((p) => {
    if (!/^[A-Za-z0-9.-]{1,253}$/.test(p)) throw new TypeError(`not a host name principal: ${JSON.stringify(p)}`);
    return sshpk.identityForHost(p);
  });
  const cert = new sshpk.Certificate({
    subjects,
    subjectKey: sshpk.parseKey(formatSshPublicKey(host.key), 'ssh'),
    issuer: sshpk.identityForUser('trustlaunch-ca'), // OpenSSH certificates carry only the CA key, not a name
    issuerKey: sshpk.parseKey(formatSshPublicKey(createPublicKey(caKey)), 'ssh'),
    // the nonce (16 random bytes) is added by sshpk when it serialises
    signatures: { openssh: { keyId: opts.keyId, exts: [] } } as unknown as sshpk.CertificateOptions['signatures'],
    serial: serialBytes(opts.serial),
    validFrom: new Date(Math.floor(opts.validAfter.getTime() / 1000) * 1000),
    validUntil: new Date(Math.floor(opts.validBefore.getTime() / 1000) * 1000),
    purposes: [],
  });
  let outcome: Error | 'signed' | undefined;
  const format = sshpk.Certificate.formats.openssh as unknown as OpenSshCertFormat;
  format.signAsync(
    cert,
    (blob, done) => done(undefined, sshpk.parseSignature(nodeSign(null, blob, caKey), 'ed25519', 'raw')),
    (err) => (outcome = err ?? 'signed'),
  );
  // our signer answers synchronously, so sshpk has finished by now
  if (outcome !== 'signed') throw outcome ?? new Error('sshpk did not sign synchronously');
  const line = cert.toString('openssh');
  // Read back what we signed with our own strict parser: the CA never hands out a
  // certificate that says something else than it was asked to (sshpk has quirks).
  const issued = parseHostCertificate(line);
  const hostLine = formatSshPublicKey(host.key);
  if (issued.publicKeyLine !== hostLine || issued.keyId !== opts.keyId || issued.kind !== 'host' || issued.principals.join('\n') !== opts.principals.join('\n')) {
    throw new TrustlaunchError('INTERNAL', 'the issued host certificate does not read back as requested');
  }
  return opts.comment === undefined ? line : `${line} ${opts.comment.replace(/[\r\n]/g, ' ')}`;
}

// --- parsing --------------------------------------------------------------------------

function secondsToDate(seconds: bigint): Date {
  const maxSeconds = 8_640_000_000_000n; // the largest JS Date, in seconds
  return new Date(Number(seconds > maxSeconds ? maxSeconds : seconds) * 1000);
}

function readNameList(bytes: Buffer, what: string): string[] {
  const r = new SshReader(bytes);
  const names: string[] = [];
  while (r.position < bytes.length) {
    if (names.length >= MAX_PRINCIPALS) throw invalid('malformed', `too many ${what}`);
    names.push(r.string().toString('utf8'));
  }
  return names;
}

/** Options and extensions: (string name, string data) pairs; we keep the names. */
function readOptionNames(bytes: Buffer): string[] {
  const r = new SshReader(bytes);
  const names: string[] = [];
  while (r.position < bytes.length) {
    if (names.length >= 64) throw invalid('malformed', 'too many options');
    names.push(r.string().toString('utf8'));
    r.string();
  }
  return names;
}

function parseBlob(certType: string, blob: Buffer, comment: string | undefined): HostCertificate {
  const keyType = CERT_TYPES[certType];
  if (keyType === undefined) throw invalid('malformed', `unsupported certificate type ${JSON.stringify(certType.slice(0, 60))}`);
  const r = new SshReader(blob);
  if (r.string().toString('latin1') !== certType) throw invalid('malformed', 'the certificate type inside the blob differs from the line');
  r.string(); // nonce
  const keyParts = keyType === 'ssh-ed25519' ? [r.string()] : [r.string(), r.string()];
  const { key: publicKey } = parseSshPublicKeyBlob(Buffer.concat([sshString(keyType), ...keyParts.map((p) => sshString(p))]));
  const serial = r.uint64();
  const kindCode = r.uint32();
  if (kindCode !== SSH2_CERT_TYPE_USER && kindCode !== SSH2_CERT_TYPE_HOST) throw invalid('malformed', `unknown certificate type ${kindCode}`);
  const keyId = r.string().toString('utf8');
  const principals = readNameList(r.string(), 'principals');
  const validAfter = r.uint64();
  const validBefore = r.uint64();
  const criticalOptions = readOptionNames(r.string());
  const extensions = readOptionNames(r.string());
  r.string(); // reserved
  const signatureKeyBlob = r.string();
  const signedEnd = r.position;
  const signatureBlob = r.string();
  r.end();
  const ca = parseSshPublicKeyBlob(signatureKeyBlob);
  const sig = new SshReader(signatureBlob);
  const signatureType = sig.string().toString('latin1');
  const signature = sig.string();
  sig.end();
  return {
    certType,
    publicKey,
    publicKeyLine: formatSshPublicKey(publicKey),
    serial,
    kind: kindCode === SSH2_CERT_TYPE_HOST ? 'host' : 'user',
    keyId,
    principals,
    validAfter: secondsToDate(validAfter),
    validBefore: secondsToDate(validBefore),
    criticalOptions,
    extensions,
    caPublicKey: ca.key,
    caFingerprint: sshFingerprint(ca.key),
    comment,
    signed: { bytes: blob.subarray(0, signedEnd), signatureType, signature },
  };
}

/** Parses an OpenSSH certificate line strictly; HOST_CERT_INVALID (reason malformed) otherwise. Checks nothing else. */
export function parseHostCertificate(line: string): HostCertificate {
  try {
    if (typeof line !== 'string' || line.length > MAX_LINE_CHARS) throw invalid('malformed', 'not a certificate line of reasonable length');
    const m = /^([a-z0-9@.-]+)[ \t]+([A-Za-z0-9+/]+={0,2})(?:[ \t]+([^\r\n]*))?$/.exec(line.replace(/\s+$/, ''));
    if (m === null) throw invalid('malformed', 'not an OpenSSH certificate line ("type base64 [comment]")');
    const [, certType, base64, comment] = m as unknown as [string, string, string, string | undefined];
    const blob = Buffer.from(base64, 'base64');
    if (blob.toString('base64') !== base64) throw invalid('malformed', 'certificate base64 is not canonical');
    return parseBlob(certType, blob, comment === '' ? undefined : comment);
  } catch (e) {
    if (isTrustlaunchError(e, 'HOST_CERT_INVALID')) throw e;
    throw invalid('malformed', `malformed certificate: ${e instanceof Error ? e.message : String(e)}`);
  }
}

// --- verification ---------------------------------------------------------------------

export interface VerifyHostCertificateOptions {
  /** The pinned SSH CA key (Ed25519): a KeyObject or an OpenSSH public key line. */
  readonly caPublicKey: KeyObject | string;
  /** When given, the certified key must be this one (OpenSSH line or KeyObject). */
  readonly hostKey?: KeyObject | string;
  /** When given, must be one of the certificate's principals (exact match). */
  readonly principal?: string;
  readonly now?: Date;
}

function toKey(key: KeyObject | string): KeyObject {
  return typeof key === 'string' ? parseSshPublicKey(key).key : key;
}

/** Verifies a host certificate against the pinned CA key; returns it parsed, or throws HOST_CERT_INVALID with `detail.reason`. */
export function verifyHostCertificate(line: string, opts: VerifyHostCertificateOptions): HostCertificate {
  const ca = toKey(opts.caPublicKey);
  if (ca.asymmetricKeyType !== 'ed25519') throw new TypeError('the pinned SSH CA key must be Ed25519');
  const now = opts.now ?? new Date();
  const cert = parseHostCertificate(line);
  // signed by the pinned CA, with a valid signature
  if (!spkiDer(cert.caPublicKey).equals(spkiDer(ca))) throw invalid('wrong-ca', `signed by ${cert.caFingerprint}, not by the pinned CA ${sshFingerprint(ca)}`);
  const { bytes, signatureType, signature } = cert.signed;
  if (signatureType !== 'ssh-ed25519' || signature.length !== 64 || !nodeVerify(null, bytes, ca, signature)) {
    throw invalid('bad-signature', 'the certificate signature does not verify with the CA key');
  }
  // what it says, now that we know the CA said it
  if (cert.kind !== 'host') throw invalid('not-a-host-certificate', 'a user certificate cannot identify a host');
  if (now.getTime() < cert.validAfter.getTime()) throw invalid('not-yet-valid', `valid only from ${cert.validAfter.toISOString()}`);
  if (now.getTime() >= cert.validBefore.getTime()) throw invalid('expired', `expired at ${cert.validBefore.toISOString()}`);
  if (cert.criticalOptions.length > 0) throw invalid('critical-option', `unknown critical options: ${cert.criticalOptions.join(', ')}`);
  // OpenSSH reads an empty principal list as "any host"; we never issue one and never accept one.
  if (cert.principals.length === 0) throw invalid('principal', 'the certificate names no principals');
  if (opts.principal !== undefined && !cert.principals.includes(opts.principal)) {
    throw invalid('principal', `${JSON.stringify(opts.principal)} is not among the principals ${cert.principals.join(', ')}`);
  }
  if (opts.hostKey !== undefined && !spkiDer(toKey(opts.hostKey)).equals(spkiDer(cert.publicKey))) {
    throw invalid('key-mismatch', 'the certificate certifies another key than the host key presented');
  }
  return cert;
}
