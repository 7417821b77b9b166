// How a test brings a manager VM into a given state: the legal transitions from
// `requested` to it, in order (src/manager/lifecycle.ts). `failed` goes through
// `scheduled`, so a failed VM has been placed, as most failed VMs are.
import type { VmState } from '../../src/manager/lifecycle.js';

export const PATH_TO_STATE: Readonly<Record<VmState, readonly VmState[]>> = {
  requested: [],
  scheduled: ['scheduled'],
  booting: ['scheduled', 'booting'],
  attesting: ['scheduled', 'booting', 'attesting'],
  running: ['scheduled', 'booting', 'attesting', 'running'],
  stopping: ['scheduled', 'booting', 'attesting', 'running', 'stopping'],
  stopped: ['scheduled', 'booting', 'attesting', 'running', 'stopping', 'stopped'],
  failed: ['scheduled', 'failed'],
};
