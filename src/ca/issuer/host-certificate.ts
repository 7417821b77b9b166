// OpenSSH host certificates for attested VMs (OpenSSH PROTOCOL.certkeys), encoded directly.
// crypto's issueHostCertificate assembles through sshpk and reads the result back (~120 µs
// per certificate); on the CA's hot path this encoder writes the same fields in ~25 µs,
// most of it the Ed25519 signature. The tests check its output with `ssh-keygen -L` and
// crypto's strict verifyHostCertificate.
import { createPublicKey, sign, type KeyObject } from 'node:crypto';
import { random } from '../random.js';
import { sshPublicKeyBlob, sshString, SshReader } from '../../crypto/ssh-keys.js';
import { TrustlaunchError } from '../../protocol/errors.js';

const CERT_TYPE = {
  'ssh-ed25519': 'ssh-ed25519-cert-v01@openssh.com',
  'ecdsa-sha2-nistp256': 'ecdsa-sha2-nistp256-cert-v01@openssh.com',
} as const;
const SSH2_CERT_TYPE_HOST = 2;

export interface HostCertificateRequest {
  /** The host key blob (RFC 4253 §6.6), already parsed and checked by the caller. */
  readonly hostKeyBlob: Buffer;
  readonly principals: readonly string[];
  readonly keyId: string;
  readonly serial: bigint;
  /** Seconds since the epoch: valid after (inclusive) and before (exclusive). */
  readonly validAfter: number;
  readonly validBefore: number;
}

/** Writes RFC 4251 values into one buffer sized in advance (no buffer per field). */
class SshWriter {
  readonly bytes: Buffer;
  #at = 0;

  constructor(size: number) {
    this.bytes = Buffer.allocUnsafe(size);
  }

  uint32(n: number): this {
    this.#at = this.bytes.writeUInt32BE(n, this.#at);
    return this;
  }

  uint64(n: bigint): this {
    this.#at = this.bytes.writeBigUInt64BE(n, this.#at);
    return this;
  }

  /** Bytes as they are (already encoded fields). */
  raw(b: Uint8Array): this {
    this.bytes.set(b, this.#at);
    this.#at += b.length;
    return this;
  }

  string(b: Uint8Array): this {
    return this.uint32(b.length).raw(b);
  }

  /** Random bytes, as a string (the certificate nonce). */
  randomString(n: number): this {
    this.uint32(n);
    random.into(this.bytes, this.#at, n);
    this.#at += n;
    return this;
  }

  /** The buffer, checked to be exactly full. */
  done(): Buffer {
    if (this.#at !== this.bytes.length) throw new Error(`SSH encoding sized ${this.bytes.length} bytes, wrote ${this.#at}`);
    return this.bytes;
  }
}

const NONCE_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;
const SIGNATURE_TYPE = Buffer.from('ssh-ed25519', 'latin1');

export class HostCertificateSigner {
  readonly #key: KeyObject;
  readonly #caBlob: Buffer;

  constructor(caPrivateKey: KeyObject) {
    if (caPrivateKey.type !== 'private' || caPrivateKey.asymmetricKeyType !== 'ed25519') throw new TypeError('the SSH CA key must be an Ed25519 private key');
    this.#key = caPrivateKey;
    this.#caBlob = sshString(sshPublicKeyBlob(createPublicKey(caPrivateKey)));
  }

  /** The certificate line `<type>-cert-v01@openssh.com base64`. */
  sign(req: HostCertificateRequest): string {
    if (req.principals.length === 0) throw new TypeError('a host certificate names at least one principal');
    if (req.validBefore <= req.validAfter) throw new TypeError('validBefore must be later than validAfter');
    const r = new SshReader(req.hostKeyBlob);
    const keyType = r.string().toString('latin1');
    const certType = CERT_TYPE[keyType as keyof typeof CERT_TYPE] as string | undefined;
    if (certType === undefined) throw new TrustlaunchError('MALFORMED_KEY', `no host certificate for ${JSON.stringify(keyType.slice(0, 40))} keys`);
    // The certified key's fields are the key blob after its type string.
    const keyFields = req.hostKeyBlob.subarray(r.position);
    const type = Buffer.from(certType, 'latin1');
    const keyId = Buffer.from(req.keyId, 'utf8');
    const principals = req.principals.map((p) => Buffer.from(p, 'utf8'));
    const principalsBytes = principals.reduce((n, p) => n + 4 + p.length, 0);
    const signedBytes = 4 + type.length + 4 + NONCE_BYTES + keyFields.length + 8 + 4 + 4 + keyId.length + 4 + principalsBytes + 8 + 8 + 3 * 4 + this.#caBlob.length;
    const signatureBytes = 4 + 4 + SIGNATURE_TYPE.length + 4 + ED25519_SIGNATURE_BYTES;
    const w = new SshWriter(signedBytes + signatureBytes)
      .string(type)
      .randomString(NONCE_BYTES) // nonce, as ssh-keygen writes it
      .raw(keyFields)
      .uint64(req.serial)
      .uint32(SSH2_CERT_TYPE_HOST)
      .string(keyId)
      .uint32(principalsBytes);
    for (const p of principals) w.string(p);
    w.uint64(BigInt(req.validAfter))
      .uint64(BigInt(req.validBefore))
      .uint32(0) // critical options: none are defined for host certificates
      .uint32(0) // extensions
      .uint32(0) // reserved
      .raw(this.#caBlob);
    const signature = sign(null, w.bytes.subarray(0, signedBytes), this.#key);
    w.uint32(signatureBytes - 4).string(SIGNATURE_TYPE).string(signature);
    return `${certType} ${w.done().toString('base64')}`;
  }
}
