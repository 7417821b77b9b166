// The VM lifecycle (DESIGN.md §5): one transition table, consulted by every state change.
//
//   requested → scheduled → booting → attesting → running → stopping → stopped
//        │           │          │          │          │          │
//        └───────────┴──────────┴──────────┴──────────┴──────────┴──→ failed
//
// A VM may be stopped from any state before `stopped`/`failed` (stopping), and may skip
// `attesting` when the node went from booting to attested between two looks. `stopped` and
// `failed` are terminal. Anything else is a bug: assertTransition throws ILLEGAL_TRANSITION.
import { TrustlaunchError } from '../protocol/errors.js';

export const VM_STATES = ['requested', 'scheduled', 'booting', 'attesting', 'running', 'stopping', 'stopped', 'failed'] as const;
export type VmState = (typeof VM_STATES)[number];

export const TRANSITIONS: Readonly<Record<VmState, readonly VmState[]>> = {
  requested: ['scheduled', 'stopping', 'failed'],
  scheduled: ['booting', 'attesting', 'running', 'stopping', 'failed'],
  booting: ['attesting', 'running', 'stopping', 'failed'],
  attesting: ['running', 'stopping', 'failed'],
  running: ['stopping', 'stopped', 'failed'],
  stopping: ['stopped', 'failed'],
  stopped: [],
  failed: [],
};

/** States a VM passes through on its way somewhere: after a restart none may be left unattended. */
export const TRANSITIONAL_STATES: readonly VmState[] = ['requested', 'scheduled', 'booting', 'attesting', 'stopping'];
export const TERMINAL_STATES: readonly VmState[] = ['stopped', 'failed'];

export function isVmState(value: unknown): value is VmState {
  return typeof value === 'string' && (VM_STATES as readonly string[]).includes(value);
}

export function canTransition(from: VmState, to: VmState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function isTerminal(state: VmState): boolean {
  return TERMINAL_STATES.includes(state);
}

export function isTransitional(state: VmState): boolean {
  return TRANSITIONAL_STATES.includes(state);
}

/** The states from which `to` may be reached (for compare-and-set updates). */
export function sourcesOf(to: VmState): VmState[] {
  return VM_STATES.filter((from) => canTransition(from, to));
}

export function assertTransition(from: VmState, to: VmState): void {
  if (!canTransition(from, to)) {
    throw new TrustlaunchError('ILLEGAL_TRANSITION', `VM state ${from} → ${to} is not in the lifecycle table`, { detail: { from, to } });
  }
}
