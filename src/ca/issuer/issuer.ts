// The issuer (DESIGN.md §4.2 step 7, §4.3): turns a verdict into what the CA signs.
// Affirming: a receipt with every ReceiptClaims field the launch established, and an
// OpenSSH host certificate for the VM's key. Contraindicated: a signed receipt with what
// the evidence asserted and `reason` {step, code, message}, so the user learns that, and
// why, the launch was refused.
import { hash, type KeyObject } from 'node:crypto';
import { random } from '../random.js';
import { RECEIPT_PROFILE, type LaunchClaims, type ReceiptClaims } from '../../protocol/messages.js';
import { HostCertificateSigner } from './host-certificate.js';
import { ReceiptSigner } from './receipt-signer.js';

/** Host certificates start a little in the past, for clocks slightly behind ours. */
export const HOST_CERT_BACKDATE_SECONDS = 300;
const MAX_REASON_MESSAGE = 512;

export interface IssuerOptions {
  readonly issuer: string;
  readonly receiptKey: KeyObject;
  readonly receiptKeyId: string;
  readonly sshCaKey: KeyObject;
  readonly receiptLifetimeSeconds: number;
}

export interface Refusal {
  readonly step: string;
  readonly code: string;
  readonly message: string;
}

export interface IssuedReceipt {
  readonly jti: string;
  readonly status: 'affirming' | 'contraindicated';
  readonly receipt: string;
  readonly hostCertificate?: string;
  /** Seconds since the epoch. */
  readonly iat: number;
  readonly exp: number;
}

/** A parsed host key: its blob (what the certificate and fingerprint cover) and its type. */
export interface HostKey {
  readonly type: string;
  readonly blob: Buffer;
}

/** `type base64` of a host key: the claim as the receipt states it (no comment). */
export function hostKeyLine(key: HostKey): string {
  return `${key.type} ${key.blob.toString('base64')}`;
}

/** OpenSSH `SHA256:` fingerprint of a key blob (base64 of the 32-byte digest, its one `=` dropped). */
export function hostKeyFingerprint(key: HostKey): `SHA256:${string}` {
  return `SHA256:${hash('sha256', key.blob, 'base64').slice(0, 43)}`;
}

export class Issuer {
  readonly #opts: IssuerOptions;
  readonly #receipts: ReceiptSigner;
  readonly #certificates: HostCertificateSigner;

  constructor(opts: IssuerOptions) {
    this.#opts = opts;
    this.#receipts = new ReceiptSigner(opts.receiptKey, opts.receiptKeyId);
    this.#certificates = new HostCertificateSigner(opts.sshCaKey);
  }

  /** What every receipt states about the launch, in the order receipts have always listed it. */
  #base(claims: LaunchClaims, now: number): Omit<ReceiptClaims, 'ear.status'> & { jti: string } {
    const iat = Math.floor(now / 1000);
    const base: Omit<ReceiptClaims, 'ear.status'> & { jti: string } = {
      iss: this.#opts.issuer,
      iat,
      exp: iat + this.#opts.receiptLifetimeSeconds,
      jti: random.take(16).toString('base64url'),
      eat_profile: RECEIPT_PROFILE,
      eat_nonce: claims.nonce,
      sub: claims.vmId,
      node: claims.nodeId,
      hostname: claims.hostname,
      kernel: claims.kernel,
    };
    if (claims.initrd !== undefined) base.initrd = claims.initrd;
    if (claims.cmdline !== undefined) base.cmdline = claims.cmdline;
    return base;
  }

  /** The receipt and host certificate for a launch that passed every step. */
  affirm(claims: LaunchClaims, hostKey: HostKey, allowlistEntry: string, now: number): IssuedReceipt {
    const receiptClaims = this.#base(claims, now) as ReceiptClaims & { jti: string };
    receiptClaims['ear.status'] = 'affirming';
    receiptClaims.ssh_host_key = hostKeyLine(hostKey);
    receiptClaims.ssh_host_key_fp = hostKeyFingerprint(hostKey);
    if (claims.authorizedKeyFp !== undefined) receiptClaims.authorized_key_fp = claims.authorizedKeyFp;
    receiptClaims.allowlist = allowlistEntry;
    const { jti, iat, exp } = receiptClaims;
    const hostCertificate = this.#certificates.sign({
      hostKeyBlob: hostKey.blob,
      principals: [claims.hostname],
      keyId: `vm=${claims.vmId} node=${claims.nodeId} nonce=${claims.nonce}`,
      serial: random.take(8).readBigUInt64BE(),
      validAfter: iat - HOST_CERT_BACKDATE_SECONDS,
      validBefore: exp,
    });
    return { jti, status: 'affirming', receipt: this.#receipts.sign(receiptClaims), hostCertificate, iat, exp };
  }

  /** The signed "no": what the evidence asserted, and why it was refused. */
  contraindicate(claims: LaunchClaims, refusal: Refusal, hostKey: HostKey | undefined, now: number): IssuedReceipt {
    const base = this.#base(claims, now);
    const asserted = hostKey === undefined ? claims.sshHostKey.split(' ').slice(0, 2).join(' ') : hostKeyLine(hostKey);
    const receiptClaims: ReceiptClaims = {
      ...base,
      'ear.status': 'contraindicated',
      ssh_host_key: asserted,
      ...(hostKey === undefined ? {} : { ssh_host_key_fp: hostKeyFingerprint(hostKey) }),
      ...(claims.authorizedKeyFp === undefined ? {} : { authorized_key_fp: claims.authorizedKeyFp }),
      reason: { step: refusal.step, code: refusal.code, message: refusal.message.slice(0, MAX_REASON_MESSAGE) },
    };
    return { jti: base.jti, status: 'contraindicated', receipt: this.#receipts.sign(receiptClaims), iat: base.iat, exp: base.exp };
  }
}
