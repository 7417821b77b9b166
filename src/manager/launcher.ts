// The manager's side of a launch and of a stop, run in the background per VM:
//   launch: scheduled → (copy image, POST dom0 /v1/vms) → booting → follow the node's
//           report → attesting → running, or failed with the reason;
//   stop:   stopping → (POST dom0 /v1/vms/{id}/stop) → follow → stopped, or failed.
// Following is bounded by a deadline (launchTimeoutMs / stopTimeoutMs from the moment the
// VM entered its phase). One task per VM at a time; a stop or delete cancels the launch.
import type { Kysely } from 'kysely';
import { isTrustlaunchError, TrustlaunchError } from '../protocol/errors.js';
import type { ManagerConfig } from './config.js';
import type { ManagerSchema } from './db/schema.js';
import type { ImageDelivery } from './delivery.js';
import type { Dom0Client } from './dom0-client.js';
import type { Dom0Pool } from './dom0-pool.js';
import { isTerminal, type VmState } from './lifecycle.js';
import type { Log } from './log.js';
import { sleep } from './mutex.js';
import { observe, sameReport, stepFor, type NodeVmReport, type Observation } from './node-report.js';
import { getVm, recordNodeReport, transition, type VmReason, type VmRecord } from './vms.js';

type Phase = 'launch' | 'stop';

interface Task {
  readonly abort: AbortController;
  readonly done: Promise<void>;
}

const MAX_POLL_INTERVAL_MS = 1_000;
/** While stopping, the stop request is sent again this often if the node still reports the VM alive. */
const STOP_RESEND_MS = 5_000;

export interface LauncherContext {
  readonly db: Kysely<ManagerSchema>;
  readonly config: ManagerConfig;
  readonly pool: Dom0Pool;
  readonly delivery: ImageDelivery;
  readonly log: Log;
}

/** The reason recorded for a failure: our codes as they are, anything else as INTERNAL. */
export function reasonOf(e: unknown): VmReason {
  if (isTrustlaunchError(e)) return { code: e.code, message: e.message };
  return { code: 'INTERNAL', message: 'internal error' };
}

export class Launcher {
  readonly #tasks = new Map<string, Task>();
  #closed = false;

  constructor(private readonly ctx: LauncherContext) {}

  /** Whether a launch or stop task is running for the VM (the node monitor leaves it alone then). */
  busy(vmId: string): boolean {
    return this.#tasks.has(vmId);
  }

  /** Starts (in the background) the launch of a VM in `scheduled`. */
  launch(vmId: string): void {
    this.#start(vmId, (signal) => this.#launch(vmId, signal));
  }

  /** Starts following a VM already on its node (booting, attesting, or stopping) — after a restart. */
  resume(vm: VmRecord): void {
    const phase: Phase = vm.state === 'stopping' ? 'stop' : 'launch';
    this.#start(vm.id, (signal) => (phase === 'stop' ? this.#stop(vm.id, signal) : this.#follow(vm.id, 'launch', signal)));
  }

  /** Cancels whatever runs for the VM, then starts its stop (the VM must be in `stopping`). */
  async stop(vmId: string): Promise<void> {
    await this.cancel(vmId);
    this.#start(vmId, (signal) => this.#stop(vmId, signal));
  }

  /** Cancels the VM's task and waits for it to end. */
  async cancel(vmId: string): Promise<void> {
    const task = this.#tasks.get(vmId);
    if (task === undefined) return;
    task.abort.abort(new TrustlaunchError('CONFLICT', 'cancelled'));
    await task.done;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const tasks = [...this.#tasks.values()];
    for (const t of tasks) t.abort.abort(new TrustlaunchError('UNAVAILABLE', 'the manager is shutting down'));
    await Promise.allSettled(tasks.map((t) => t.done));
  }

  #start(vmId: string, fn: (signal: AbortSignal) => Promise<void>): void {
    if (this.#closed || this.#tasks.has(vmId)) return;
    const abort = new AbortController();
    const done = fn(abort.signal)
      .catch((e: unknown) => {
        if (!abort.signal.aborted) this.ctx.log.error({ vmId, err: e }, 'VM task failed');
      })
      .finally(() => {
        if (this.#tasks.get(vmId)?.abort === abort) this.#tasks.delete(vmId);
      });
    this.#tasks.set(vmId, { abort, done });
  }

  async #launch(vmId: string, signal: AbortSignal): Promise<void> {
    const vm = await getVm(this.ctx.db, vmId);
    if (vm?.state !== 'scheduled' || vm.nodeId === undefined) return;
    let report: NodeVmReport;
    let client: Dom0Client;
    try {
      client = await this.ctx.pool.get(vm.nodeId);
      report = await this.#create(client, vm, signal);
    } catch (e) {
      if (signal.aborted) return;
      await this.#fail(vmId, ['scheduled'], reasonOf(e));
      return;
    }
    const moved = await transition(this.ctx.db, vmId, { from: 'scheduled', to: 'booting', nodeReport: report });
    if (moved === undefined) {
      // Stopped or deleted while the node was creating it: the node must not keep it running.
      const now = await getVm(this.ctx.db, vmId);
      if (now === undefined) await client.deleteVm(vmId).catch(() => false);
      else if (isTerminal(now.state)) await client.stopVm(vmId).catch(() => false);
      return;
    }
    await this.#apply(moved, observe(report), report);
    await this.#follow(vmId, 'launch', signal);
  }

  /** Copies the image and asks dom0 for the VM; a node that lost the image is sent it again, once. */
  async #create(client: Dom0Client, vm: VmRecord, signal: AbortSignal): Promise<NodeVmReport> {
    const request = {
      vmId: vm.id,
      image: vm.imageDigest,
      nonce: vm.nonce,
      hostname: vm.hostname,
      memoryMiB: vm.memoryMiB,
      ...(vm.sshPublicKey === undefined ? {} : { authorizedKey: vm.sshPublicKey }),
    };
    for (let attempt = 0; ; attempt++) {
      await this.ctx.delivery.deliver(client, vm.imageDigest, vm.imageKind, signal);
      try {
        return await client.createVm(request, signal);
      } catch (e) {
        if (attempt > 0 || !isTrustlaunchError(e, 'NOT_FOUND')) throw e;
        this.ctx.log.warn({ vmId: vm.id, nodeId: client.nodeId }, 'node lacks an image it was sent; sending it again');
        await this.ctx.delivery.forget(client.nodeId);
      }
    }
  }

  async #stop(vmId: string, signal: AbortSignal): Promise<void> {
    const vm = await getVm(this.ctx.db, vmId);
    if (vm?.state !== 'stopping') return;
    if (vm.nodeId === undefined) {
      // Stopped while requested: it never reached a node, so there is nothing to stop there.
      await transition(this.ctx.db, vmId, { from: 'stopping', to: 'stopped' });
      return;
    }
    await this.#follow(vmId, 'stop', signal);
  }

  /** Looks at the VM on its node until it has left its phase, or the phase's deadline passes. */
  async #follow(vmId: string, phase: Phase, signal: AbortSignal): Promise<void> {
    let interval = this.ctx.config.vmPollIntervalMs;
    let lastStopSent = 0;
    while (!signal.aborted) {
      const vm = await getVm(this.ctx.db, vmId);
      if (vm === undefined || isTerminal(vm.state) || vm.nodeId === undefined) return;
      if (phase === 'launch' && (vm.state === 'running' || vm.state === 'stopping')) return;
      // A launch counts from the request, a stop from when it was asked for.
      const limit = phase === 'stop' ? this.ctx.config.stopTimeoutMs : this.ctx.config.launchTimeoutMs;
      if (Date.now() - (phase === 'stop' ? vm.stateSince : vm.createdAt) > limit) {
        const what = phase === 'stop' ? 'stopped' : 'running';
        await this.#fail(vmId, [vm.state], { code: 'TIMEOUT', message: `the VM was not ${what} within ${limit} ms` });
        return;
      }
      try {
        const client = await this.ctx.pool.get(vm.nodeId);
        if (phase === 'stop' && Date.now() - lastStopSent >= STOP_RESEND_MS) {
          lastStopSent = Date.now();
          await client.stopVm(vmId, signal);
        }
        const report = await client.vm(vmId, signal);
        await this.#apply(vm, report === undefined ? { state: 'missing' } : observe(report), report);
      } catch (e) {
        if (signal.aborted) return;
        if (isTrustlaunchError(e, 'NOT_FOUND')) {
          // The node left the inventory.
          await this.#fail(vmId, [vm.state], { code: 'VM_LOST', message: `node ${vm.nodeId} was removed` });
          return;
        }
        // Unreachable or answering nonsense: try again until the deadline.
        this.ctx.log.warn({ vmId, nodeId: vm.nodeId, err: e }, 'cannot follow VM on its node');
      }
      await sleep(interval, signal);
      interval = Math.min(interval * 2, MAX_POLL_INTERVAL_MS);
    }
  }

  /** Applies what the node said, within the lifecycle table; otherwise keeps the report. */
  async #apply(vm: VmRecord, observation: Observation, report: NodeVmReport | undefined): Promise<void> {
    const step = stepFor(vm.state, observation);
    if (step !== undefined) {
      await transition(this.ctx.db, vm.id, {
        from: vm.state,
        to: step.to,
        ...(step.reason === undefined ? {} : { reason: step.reason }),
        ...(report === undefined ? {} : { nodeReport: report }),
      });
    } else if (report !== undefined && !sameReport(report, vm.nodeReport)) {
      await recordNodeReport(this.ctx.db, vm.id, report);
    }
  }

  async #fail(vmId: string, from: readonly VmState[], reason: VmReason): Promise<void> {
    const legal = from.filter((s) => !isTerminal(s));
    if (legal.length > 0) await transition(this.ctx.db, vmId, { from: legal, to: 'failed', reason });
  }
}
