// One VM's attestation (DESIGN.md §4.2 steps 5–8 on the node's side), as named steps:
//   claims → evidence (quote) → record (before sending: a restart resends the same
//   evidence, so there is at most one evidence per (VM, nonce)) → send (bounded
//   exponential backoff while the CA is unreachable; NONCE_REUSED → the receipt the CA
//   already issued) → deliver (the host certificate over the VM's channel) → attested,
//   or refused with the CA's reason code.
import { z } from 'zod';
import { decodeReceiptUnverified } from '../../crypto/receipts.js';
import { TrustlaunchError, isTrustlaunchError } from '../../protocol/errors.js';
import { EvidenceSchema, type Evidence } from '../../protocol/messages.js';
import type { AttestationKey, AuthDevice } from '../../tpm/auth-device.js';
import type { MiniDomainCapability, VmReport } from '../hypervisor/index.js';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.js';
import type { CaClient, EvidenceAnswer } from './ca-client.js';
import { launchClaims, makeEvidence } from './evidence.js';

/** What the mini-domain keeps with a VM (through `setAttestation`'s note) so that a restart resumes it. */
const NoteSchema = z.strictObject({ v: z.literal(1), evidence: EvidenceSchema });

export interface AttestContext {
  readonly cap: MiniDomainCapability;
  readonly device: AuthDevice;
  readonly ak: AttestationKey;
  readonly ca: CaClient;
  readonly backoff: BackoffPolicy;
  readonly clock: () => Date;
  readonly signal: AbortSignal;
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
  log(event: string, detail: Record<string, unknown>): void;
}

/** Errors that mean "try again later" rather than "no". */
function transient(e: unknown): boolean {
  return isTrustlaunchError(e) && (e.kind === 'transport' || e.code === 'INTERNAL');
}

/** The evidence a previous mini-domain made for this very VM and nonce, if any. */
export function resumedEvidence(report: VmReport): Evidence | undefined {
  const note = NoteSchema.safeParse(report.note);
  if (!note.success) return undefined;
  const c = note.data.evidence.claims;
  const m = report.measurements;
  const same = c.vmId === report.name && c.kernel === report.kernelDigest && c.initrd === m.initrd && c.cmdline === m.cmdline && c.sshHostKey === report.sshHostKey && c.nonce === report.launch?.nonce;
  return same ? note.data.evidence : undefined;
}

export async function attestVm(ctx: AttestContext, report: VmReport): Promise<void> {
  const { cap } = ctx;
  const vmId = report.vmId;
  let evidence = resumedEvidence(report);
  if (evidence === undefined) {
    let claims;
    try {
      claims = launchClaims(cap.nodeId, report, ctx.clock());
    } catch (e) {
      return refuse(ctx, report, isTrustlaunchError(e) ? e.code : 'MALFORMED_REQUEST', e);
    }
    evidence = await ctx.step('evidence', () => makeEvidence({ device: ctx.device, ak: ctx.ak, claims, eventLog: cap.eventLog() }));
    cap.setAttestation(vmId, { state: 'attesting', note: { v: 1, evidence } });
  } else if (report.attestation.state === 'booting') {
    cap.setAttestation(vmId, { state: 'attesting' });
  }
  const answer = await send(ctx, report, evidence);
  if (answer === undefined) return;
  deliver(ctx, report, answer);
}

/** Sends the evidence until the CA judges it; undefined when the VM was refused (already recorded) or the agent stops. */
async function send(ctx: AttestContext, report: VmReport, evidence: Evidence): Promise<EvidenceAnswer | undefined> {
  let lastReason: string | null = null;
  for (let attempt = 0; !ctx.signal.aborted; attempt++) {
    try {
      return await ctx.step('send', () => ctx.ca.evidence(evidence, ctx.signal));
    } catch (e) {
      if (isTrustlaunchError(e, 'NONCE_REUSED')) return lookup(ctx, report, evidence);
      if (!transient(e)) {
        refuse(ctx, report, isTrustlaunchError(e) ? e.code : 'INTERNAL', e);
        return undefined;
      }
      const reason = (e as TrustlaunchError).code;
      if (reason !== lastReason) {
        ctx.cap.setAttestation(report.vmId, { state: 'attesting', reason });
        ctx.log('ca-unreachable', { vm: report.name, code: reason, message: (e as Error).message });
        lastReason = reason;
      }
      await sleep(backoffDelay(ctx.backoff, attempt), ctx.signal);
    }
  }
  return undefined;
}

/** The CA already judged this nonce: its receipt must be about this very VM and host key. */
async function lookup(ctx: AttestContext, report: VmReport, evidence: Evidence): Promise<EvidenceAnswer | undefined> {
  const answer = await ctx.step('receipt', () => ctx.ca.receipt(evidence.claims.nonce, ctx.signal));
  let claims: Record<string, unknown>;
  try {
    claims = decodeReceiptUnverified(answer.receipt).claims;
  } catch (e) {
    refuse(ctx, report, 'RECEIPT_MALFORMED', e);
    return undefined;
  }
  if (claims['sub'] !== report.name || (claims['ssh_host_key'] !== undefined && claims['ssh_host_key'] !== report.sshHostKey)) {
    refuse(ctx, report, 'NONCE_REUSED', new TrustlaunchError('NONCE_REUSED', 'the CA judged this nonce for another VM or host key'));
    return undefined;
  }
  return answer;
}

function deliver(ctx: AttestContext, report: VmReport, answer: EvidenceAnswer): void {
  const status = answer.status ?? statusOf(answer.receipt);
  if (status !== 'contraindicated' && answer.hostCertificate !== undefined) {
    ctx.cap.sendHostCertificate(report.vmId, answer.hostCertificate);
    ctx.cap.setAttestation(report.vmId, { state: 'attested' });
    ctx.log('attested', { vm: report.name, status });
    return;
  }
  refuse(ctx, report, reasonOf(answer), new TrustlaunchError('RECEIPT_CONTRAINDICATED', `the CA judged the launch ${status}`));
}

/** The receipt's `ear.status` (a receipt fetched by nonce carries no separate status). */
function statusOf(receipt: string): string {
  try {
    const s = decodeReceiptUnverified(receipt).claims['ear.status'];
    return typeof s === 'string' ? s : 'contraindicated';
  } catch {
    return 'contraindicated';
  }
}

/** The reason code a contraindicated receipt names (unverified here: the user verifies the receipt). */
function reasonOf(answer: EvidenceAnswer): string {
  try {
    const reason = decodeReceiptUnverified(answer.receipt).claims['reason'] as { code?: unknown } | undefined;
    if (typeof reason?.code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(reason.code)) return reason.code;
  } catch {
    // an unreadable receipt is still a "no"
  }
  return 'RECEIPT_CONTRAINDICATED';
}

function refuse(ctx: AttestContext, report: VmReport, code: string, cause: unknown): void {
  ctx.cap.setAttestation(report.vmId, { state: 'refused', reason: code });
  ctx.log('refused', { vm: report.name, code, message: cause instanceof Error ? cause.message : String(cause) });
}
