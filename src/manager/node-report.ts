// What a node's dom0 says about one VM, and what that implies for the manager's record.
// dom0 is untrusted: its answer only moves the manager's bookkeeping, within the
// lifecycle table, and is shown to the user as "the node says" — users believe the CA's
// receipt, never this.
import { canonicalize } from '../protocol/canonical-json.js';
import type { Digest } from '../protocol/digest.js';
import { isErrorCode, type ErrorCode } from '../protocol/errors.js';
import { canTransition, type VmState } from './lifecycle.js';

export type AttestationStatus = 'booting' | 'attesting' | 'attested' | 'refused';

export interface NodeVmReport {
  /** dom0's own word for the VM's state (e.g. running, stopped). */
  readonly state: string;
  readonly attestation: AttestationStatus;
  /** When refused or failed: the code and message the node gave. */
  readonly code?: string;
  readonly message?: string;
  /** Where the VM's SSH server listens, as the node reports it. */
  readonly ssh?: { readonly host: string; readonly port: number };
  /** The kernel digest the node says it measured. */
  readonly kernel?: Digest;
  /** When the manager received this report. */
  readonly seenAt: number;
}

/** One of the states the manager can learn from a node, with a reason when it is a failure. */
export type Observation =
  | { readonly state: 'booting' | 'attesting' | 'running' | 'stopped' }
  | { readonly state: 'failed'; readonly code: ErrorCode; readonly message: string }
  | { readonly state: 'missing' };

const STOPPED_WORDS: ReadonlySet<string> = new Set(['stopped', 'destroyed', 'exited', 'shutoff']);
const FAILED_WORDS: ReadonlySet<string> = new Set(['failed', 'crashed', 'error']);

/** What the node's report means for the VM. */
export function observe(report: NodeVmReport): Observation {
  if (report.attestation === 'refused' && report.code === UNATTESTED_CODE) return observeUnattested(report);
  if (report.attestation === 'refused') {
    return { state: 'failed', code: codeOr(report.code, 'RECEIPT_CONTRAINDICATED'), message: report.message ?? 'the node reports that attestation was refused' };
  }
  if (FAILED_WORDS.has(report.state)) {
    return { state: 'failed', code: codeOr(report.code, 'VM_BOOT_FAILED'), message: report.message ?? `the node reports the VM ${report.state}` };
  }
  if (STOPPED_WORDS.has(report.state)) return { state: 'stopped' };
  if (report.attestation === 'attested') return { state: 'running' };
  if (report.attestation === 'attesting') return { state: 'attesting' };
  return { state: 'booting' };
}

/**
 * A node with attestation turned off (a benchmark/development switch) reports every VM
 * refused with UNSUPPORTED. Its VMs are followed by their run state alone: `running`
 * in the manager never meant "trusted" — only a CA receipt does.
 */
export const UNATTESTED_CODE = 'UNSUPPORTED';

function observeUnattested(report: NodeVmReport): Observation {
  // The code and message are the attestation's ("turned off"), not why the VM ended.
  if (FAILED_WORDS.has(report.state)) return { state: 'failed', code: 'VM_BOOT_FAILED', message: `the node reports the VM ${report.state} (attestation is off on the node)` };
  if (STOPPED_WORDS.has(report.state)) return { state: 'stopped' };
  return report.state === 'running' ? { state: 'running' } : { state: 'booting' };
}

/** Whether the node still runs the VM (or is starting it), whatever its attestation. */
export function aliveOnNode(report: NodeVmReport): boolean {
  return report.state === 'running' || report.state === 'booting';
}

function codeOr(code: string | undefined, fallback: ErrorCode): ErrorCode {
  return isErrorCode(code) ? code : fallback;
}

export interface Step {
  readonly to: VmState;
  readonly reason?: { readonly code: ErrorCode; readonly message: string };
}

/**
 * The state change an observation calls for, if any; always one the lifecycle table
 * allows, so a node saying nonsense cannot push a VM anywhere illegal.
 *  - a VM that ends before it ran has failed (it did not boot, or was never attested);
 *  - a VM the node no longer has is lost — unless it was being stopped;
 *  - a node going "backwards" (running → booting) is ignored.
 */
export function stepFor(current: VmState, observation: Observation): Step | undefined {
  let step: Step;
  switch (observation.state) {
    case 'missing':
      step = current === 'stopping' ? { to: 'stopped' } : { to: 'failed', reason: { code: 'VM_LOST', message: 'the node no longer has this VM' } };
      break;
    case 'stopped':
      step =
        current === 'running' || current === 'stopping'
          ? { to: 'stopped' }
          : { to: 'failed', reason: { code: 'VM_BOOT_FAILED', message: 'the VM stopped before it was attested' } };
      break;
    case 'failed':
      step = { to: 'failed', reason: { code: observation.code, message: observation.message } };
      break;
    default:
      // A stop in progress is not undone by the node still reporting the VM alive.
      if (current === 'stopping') return undefined;
      step = { to: observation.state };
  }
  if (step.to === current || !canTransition(current, step.to)) return undefined;
  return step;
}

/** Whether two reports say the same (when they were received aside). */
export function sameReport(a: NodeVmReport | undefined, b: NodeVmReport | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const { seenAt: _a, ...restA } = a;
  const { seenAt: _b, ...restB } = b;
  return canonicalize(restA) === canonicalize(restB);
}
