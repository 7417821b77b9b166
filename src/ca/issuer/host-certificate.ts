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
const EMPTY = sshString(Buffer.alloc(0));

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

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function uint64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}

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
    const signed = Buffer.concat([
      sshString(certType),
      sshString(random.take(32)), // nonce, as ssh-keygen writes it
      keyFields,
      uint64(req.serial),
      uint32(SSH2_CERT_TYPE_HOST),
      sshString(req.keyId),
      sshString(Buffer.concat(req.principals.map((p) => sshString(p)))),
      uint64(BigInt(req.validAfter)),
      uint64(BigInt(req.validBefore)),
      EMPTY, // critical options: none are defined for host certificates
      EMPTY, // extensions
      EMPTY, // reserved
      this.#caBlob,
    ]);
    const signature = sshString(Buffer.concat([sshString('ssh-ed25519'), sshString(sign(null, signed, this.#key))]));
    return `${certType} ${Buffer.concat([signed, signature]).toString('base64')}`;
  }
}
