// Start-up reconciliation: after a restart (or a crash) no VM may be left in a state
// nobody is working on. Before the manager serves, every VM in a transitional state is
// brought to a true one by asking its node:
//   requested            → failed (VM_LOST): it never reached a node, and nothing will place it now
//                          (stopping without a node: stopped);
//   no node any more     → failed (VM_LOST);
//   node unreachable     → failed (NODE_UNREACHABLE) — stopping included: nobody can say it stopped;
//   node has no such VM  → scheduled/booting/attesting: failed (VM_LOST); stopping: stopped;
//   node reports it      → the state the report implies (lifecycle table);
// and what is still on its way (booting, attesting, stopping on a live node) is followed
// again by the launcher, under the same deadlines as before the restart.
import type { Kysely } from 'kysely';
import { isTrustlaunchError } from '../protocol/errors.js';
import type { ManagerSchema } from './db/schema.js';
import type { Dom0Pool } from './dom0-pool.js';
import type { Launcher } from './launcher.js';
import { isTransitional, TRANSITIONAL_STATES, type VmState } from './lifecycle.js';
import type { Log } from './log.js';
import { observe, stepFor, type Observation, type Step } from './node-report.js';
import { getVm, listVmsIn, transition, type VmRecord } from './vms.js';

export interface ReconcileSummary {
  /** VM id → the state it was left in. */
  readonly outcomes: ReadonlyMap<string, VmState>;
}

export async function reconcileVms(db: Kysely<ManagerSchema>, pool: Dom0Pool, launcher: Launcher, log: Log): Promise<ReconcileSummary> {
  const outcomes = new Map<string, VmState>();
  const unreachable = new Map<string, string>();
  for (const vm of await listVmsIn(db, TRANSITIONAL_STATES)) {
    const step = await decide(vm, pool, unreachable);
    const after = step === undefined ? vm : await transition(db, vm.id, { from: vm.state, to: step.to, ...(step.reason === undefined ? {} : { reason: step.reason }) });
    const now = after ?? (await getVm(db, vm.id));
    if (now === undefined) continue;
    outcomes.set(vm.id, now.state);
    if (isTransitional(now.state)) launcher.resume(now);
    if (step !== undefined) log.info({ vmId: vm.id, from: vm.state, to: step.to, reason: step.reason?.code }, 'VM reconciled after restart');
  }
  return { outcomes };
}

/** `unreachable` remembers nodes that did not answer, so each costs one timeout, not one per VM. */
async function decide(vm: VmRecord, pool: Dom0Pool, unreachable: Map<string, string>): Promise<Step | undefined> {
  if (vm.state === 'stopping' && vm.nodeId === undefined) return { to: 'stopped' };
  if (vm.state === 'requested' || vm.nodeId === undefined) {
    return { to: 'failed', reason: { code: 'VM_LOST', message: 'the manager stopped before the VM was placed on a node' } };
  }
  const known = unreachable.get(vm.nodeId);
  if (known !== undefined) return { to: 'failed', reason: { code: 'NODE_UNREACHABLE', message: known } };
  let observation: Observation;
  try {
    const client = await pool.get(vm.nodeId);
    const report = await client.vm(vm.id);
    observation = report === undefined ? { state: 'missing' } : observe(report);
  } catch (e) {
    if (isTrustlaunchError(e, 'NOT_FOUND')) return { to: 'failed', reason: { code: 'VM_LOST', message: `node ${vm.nodeId} is no longer in the inventory` } };
    const message = `node ${vm.nodeId} did not answer after the manager restarted: ${e instanceof Error ? e.message : String(e)}`;
    unreachable.set(vm.nodeId, message);
    return { to: 'failed', reason: { code: 'NODE_UNREACHABLE', message } };
  }
  if (vm.state === 'scheduled' && observation.state === 'missing') {
    return { to: 'failed', reason: { code: 'VM_LOST', message: 'the manager stopped before the node received the VM' } };
  }
  return stepFor(vm.state, observation);
}
