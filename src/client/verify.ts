// The user's verification of a launch (DESIGN.md §4.2 step 8) as a visible pipeline of
// named checks, each with its own error code. The receipt's signature is checked with the
// pinned CA key before any claim is believed; the claims are then compared with what this
// client itself chose or expects — never with what the manager says.
//
//   signature        RECEIPT_* (parse, alg, typ, signature, claims, iss, time: crypto/receipts)
//   nonce            NONCE_MISMATCH            eat_nonce is the nonce this client sent
//   status           RECEIPT_CONTRAINDICATED   ear.status is affirming (else: the CA's reason)
//   vm               VM_MISMATCH               sub and hostname are the VM id the manager gave
//   kernel           KERNEL_MISMATCH           the attested kernel is the one expected (--expect-kernel)
//   hostKey          HOST_KEY_MISMATCH         ssh_host_key is a key, and ssh_host_key_fp its fingerprint
//   hostCertificate  HOST_CERT_INVALID         signed by the pinned SSH CA key, a host certificate, valid
//                    / HOST_KEY_MISMATCH       now, names the VM, certifies exactly ssh_host_key
//   authorizedKey    AUTHORIZED_KEY_MISMATCH   authorized_key_fp, when present, is the user's key
import type { PinnedCa } from '../ca/identity.js';
import { sshFingerprint } from '../crypto/fingerprints.js';
import { verifyReceipt } from '../crypto/receipts.js';
import { verifyHostCertificate } from '../crypto/ssh-certificates.js';
import { formatSshPublicKey, parseSshPublicKey } from '../crypto/ssh-keys.js';
import type { Digest } from '../protocol/digest.js';
import { isTrustlaunchError, TrustlaunchError, type ErrorCode } from '../protocol/errors.js';
import type { ReceiptClaims } from '../protocol/messages.js';

export const LAUNCH_CHECKS = ['signature', 'nonce', 'status', 'vm', 'kernel', 'hostKey', 'hostCertificate', 'authorizedKey'] as const;
export type LaunchCheck = (typeof LAUNCH_CHECKS)[number];

/** What this client chose or expects; a check whose expectation is absent is skipped (and said so). */
export interface LaunchExpectations {
  /** The nonce this client sent (always given by `vm create`). */
  readonly nonce?: string;
  /** The VM id the manager answered the create request with (also the VM's hostname). */
  readonly vmId?: string;
  /** `--expect-kernel`. */
  readonly kernel?: Digest;
  /** The user's login key (OpenSSH line) the VM was asked to authorize. */
  readonly authorizedKey?: string;
  /** Refuse an affirming receipt without a host certificate (true for receipts fetched from the CA). */
  readonly requireHostCertificate?: boolean;
  readonly now?: Date;
}

export interface VerifiedLaunch {
  readonly claims: ReceiptClaims;
  /** The attested host key, `type base64`. */
  readonly hostKey: string;
  readonly hostKeyFingerprint: string;
  /** The host certificate, verified (undefined only when none was given and none required). */
  readonly hostCertificate: string | undefined;
  /** The checks that ran and passed, in order. */
  readonly passed: readonly LaunchCheck[];
  /** Checks skipped, and why (e.g. no expected kernel given). */
  readonly notes: readonly string[];
}

/** What the CA served for a nonce. */
export interface ReceiptBundle {
  readonly receipt: string;
  readonly hostCertificate: string | undefined;
}

function refuse(check: LaunchCheck, code: ErrorCode, message: string, detail: Record<string, unknown> = {}): never {
  throw new TrustlaunchError(code, message, { detail: { check, ...detail } });
}

/** Runs every check; returns the verified launch or throws the first failing check's error (`detail.check` names it). */
export async function verifyLaunch(ca: PinnedCa, bundle: ReceiptBundle, expect: LaunchExpectations): Promise<VerifiedLaunch> {
  const passed: LaunchCheck[] = [];
  const notes: string[] = [];
  const claims = await checkSignatureAndNonce(ca, bundle.receipt, expect);
  passed.push('signature');
  if (expect.nonce === undefined) notes.push('nonce: not checked (no nonce given)');
  else passed.push('nonce');
  checkStatus(claims);
  passed.push('status');
  if (expect.vmId === undefined) {
    notes.push('vm: not checked (no VM id given)');
  } else {
    checkVm(claims, expect.vmId);
    passed.push('vm');
  }
  if (expect.kernel === undefined) {
    notes.push(`kernel: not compared (no --expect-kernel); the CA allowlisted ${claims.kernel ?? '?'}${claims.allowlist === undefined ? '' : ` as ${claims.allowlist}`}`);
  } else {
    checkKernel(claims, expect.kernel);
    passed.push('kernel');
  }
  const hostKey = checkHostKey(claims);
  passed.push('hostKey');
  if (bundle.hostCertificate === undefined) {
    if (expect.requireHostCertificate === true) refuse('hostCertificate', 'HOST_CERT_INVALID', 'the CA served no host certificate with this affirming receipt');
    notes.push('hostCertificate: none given');
  } else {
    checkHostCertificate(ca, bundle.hostCertificate, hostKey.line, claims, expect.now);
    passed.push('hostCertificate');
  }
  if (expect.authorizedKey === undefined) {
    notes.push('authorizedKey: not checked (no login key given)');
  } else if (claims.authorized_key_fp === undefined) {
    notes.push('authorizedKey: the receipt does not attest the login key (the node did not report one)');
  } else {
    checkAuthorizedKey(claims.authorized_key_fp, expect.authorizedKey);
    passed.push('authorizedKey');
  }
  return { claims, hostKey: hostKey.line, hostKeyFingerprint: hostKey.fingerprint, hostCertificate: bundle.hostCertificate, passed, notes };
}

// --- the checks ---------------------------------------------------------------------

async function checkSignatureAndNonce(ca: PinnedCa, receipt: string, expect: LaunchExpectations): Promise<ReceiptClaims> {
  try {
    return await verifyReceipt(receipt, {
      keys: ca.receiptKeys,
      issuer: ca.issuer,
      ...(expect.nonce === undefined ? {} : { expectedNonce: expect.nonce }),
      ...(expect.now === undefined ? {} : { now: expect.now }),
    });
  } catch (e) {
    if (!isTrustlaunchError(e)) throw e;
    const step = e.detail?.['step'];
    throw new TrustlaunchError(e.code, e.message, { cause: e, detail: { ...e.detail, check: step === 'nonce' ? 'nonce' : 'signature' } });
  }
}

function checkStatus(claims: ReceiptClaims): void {
  const status = claims['ear.status'];
  if (status === 'affirming') return;
  const reason = claims.reason;
  const why = reason === undefined ? '' : `: ${reason.code} at its ${reason.step} step (${reason.message})`;
  refuse('status', 'RECEIPT_CONTRAINDICATED', `the CA judged this launch ${status}${why}`, { status, ...(reason === undefined ? {} : { reason }) });
}

function checkVm(claims: ReceiptClaims, vmId: string): void {
  if (claims.sub !== vmId) refuse('vm', 'VM_MISMATCH', `the receipt is for VM ${claims.sub}, not ${vmId}`, { attested: claims.sub, expected: vmId });
  if (claims.hostname !== vmId) {
    refuse('vm', 'VM_MISMATCH', `the receipt names host ${claims.hostname ?? '(none)'}, not ${vmId}`, { attested: claims.hostname ?? null, expected: vmId });
  }
}

function checkKernel(claims: ReceiptClaims, expected: Digest): void {
  if (claims.kernel !== expected) {
    refuse('kernel', 'KERNEL_MISMATCH', `the VM runs kernel ${claims.kernel ?? '(none attested)'}, not the expected ${expected}`, { attested: claims.kernel ?? null, expected });
  }
}

function checkHostKey(claims: ReceiptClaims): { line: string; fingerprint: string } {
  if (claims.ssh_host_key === undefined) refuse('hostKey', 'HOST_KEY_MISMATCH', 'the receipt attests no SSH host key');
  let key;
  try {
    key = parseSshPublicKey(claims.ssh_host_key);
  } catch (e) {
    refuse('hostKey', 'HOST_KEY_MISMATCH', `the attested SSH host key does not parse: ${(e as Error).message}`);
  }
  const fingerprint = sshFingerprint(key.key);
  if (claims.ssh_host_key_fp !== fingerprint) {
    refuse('hostKey', 'HOST_KEY_MISMATCH', `the receipt's host key fingerprint ${claims.ssh_host_key_fp ?? '(none)'} is not that of its host key (${fingerprint})`);
  }
  return { line: formatSshPublicKey(key.key), fingerprint };
}

function checkHostCertificate(ca: PinnedCa, certificate: string, hostKey: string, claims: ReceiptClaims, now: Date | undefined): void {
  try {
    verifyHostCertificate(certificate, { caPublicKey: ca.sshCaKey, hostKey, principal: claims.sub, ...(now === undefined ? {} : { now }) });
  } catch (e) {
    if (!isTrustlaunchError(e, 'HOST_CERT_INVALID')) throw e;
    const reason = e.detail?.['reason'];
    if (reason === 'key-mismatch') refuse('hostCertificate', 'HOST_KEY_MISMATCH', `the host certificate certifies another key than the attested one: ${e.message}`, { reason });
    refuse('hostCertificate', 'HOST_CERT_INVALID', e.message, { reason });
  }
}

function checkAuthorizedKey(attested: string, userKey: string): void {
  const mine = sshFingerprint(userKey);
  if (attested !== mine) refuse('authorizedKey', 'AUTHORIZED_KEY_MISMATCH', `the VM authorizes login key ${attested}, not yours (${mine})`, { attested, expected: mine });
}
