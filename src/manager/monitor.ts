// The node monitor: every nodePollIntervalMs it asks each node's dom0 for its health and
// capacity (GET /v1/node) and its VMs (GET /v1/vms). A node answering is `up`; one that
// failed nodeDownAfterFailures polls in a row is `down` and gets no new VMs until it
// answers again. The VM list keeps the manager's records true while no launch or stop
// task watches them: a running VM the node lost has failed, one that ended has stopped;
// a VM the node runs although the manager's record says it ended is stopped on the node;
// a manager-made VM the manager has no record of (deleted while its node was away) is
// deleted from the node.
//
// Each poll also tells which VM backend the node runs (process or QEMU). That is a
// property of the running node process (`node serve --vm-backend` overrides its config),
// so the monitor keeps the latest answer in memory rather than a stored one that a node
// restart could make stale; placement waits for the first round after a start.
import type { Kysely } from 'kysely';
import { isTrustlaunchError } from '../protocol/errors.js';
import type { ManagerConfig } from './config.js';
import type { ManagerSchema } from './db/schema.js';
import type { Dom0Client } from './dom0-client.js';
import type { Dom0Pool } from './dom0-pool.js';
import { VM_ID } from './ids.js';
import type { Launcher } from './launcher.js';
import { isTerminal } from './lifecycle.js';
import type { Log } from './log.js';
import { aliveOnNode, observe, sameReport, stepFor } from './node-report.js';
import { listNodes, recordPollFailure, recordPollSuccess, type NodeRecord, type NodeState } from './nodes.js';
import type { VmBackendKind } from './scheduler.js';
import { listNodeVms, recordNodeReport, transition } from './vms.js';

export class NodeMonitor {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  readonly #backends = new Map<string, VmBackendKind>();
  #firstRound: Promise<void> | undefined;
  #firstRoundDone: (() => void) | undefined;

  constructor(
    private readonly db: Kysely<ManagerSchema>,
    private readonly config: ManagerConfig,
    private readonly pool: Dom0Pool,
    private readonly launcher: Launcher,
    private readonly log: Log,
  ) {}

  start(): void {
    this.#firstRound = new Promise<void>((resolve) => (this.#firstRoundDone = resolve));
    this.#schedule(0);
  }

  /** Resolves once every node was polled at least once since start() (at once when never started). */
  async firstRound(): Promise<void> {
    await this.#firstRound;
  }

  /** The node with the VM backend it last reported. */
  withBackend(node: NodeRecord): NodeState {
    return { ...node, vmBackend: this.#backends.get(node.id) ?? null };
  }

  /** Forgets what a node reported (it re-joined: perhaps another node behind the id; or it was removed). */
  forget(nodeId: string): void {
    this.#backends.delete(nodeId);
  }

  /** Polls every node now (after a join, in tests); resolves when done. Never overlaps a tick. */
  async pollNow(): Promise<void> {
    await this.#running;
    if (this.#stopped) return;
    this.#running = this.#tick();
    await this.#running;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    this.#firstRoundDone?.();
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.pollNow().finally(() => {
        this.#firstRoundDone?.();
        this.#firstRoundDone = undefined;
        this.#schedule(this.config.nodePollIntervalMs);
      });
    }, ms);
  }

  async #tick(): Promise<void> {
    try {
      const nodes = await listNodes(this.db);
      await Promise.all(nodes.map((n) => this.pollNode(n)));
    } catch (e) {
      this.log.error({ err: e }, 'node poll failed');
    }
  }

  /** One node: health first; if it answers, its VMs. */
  async pollNode(node: NodeRecord): Promise<void> {
    let client: Dom0Client;
    try {
      client = await this.pool.get(node.id);
      const info = await client.node();
      if (info.id !== node.id) {
        await this.#failed(node, `the node at ${node.endpoint} says it is ${info.id}`);
        return;
      }
      await recordPollSuccess(this.db, node.id, info);
      this.#backends.set(node.id, info.vmBackend);
      if (node.status !== 'up') this.log.info({ nodeId: node.id }, 'node is up');
    } catch (e) {
      if (isTrustlaunchError(e, 'NOT_FOUND')) return; // removed meanwhile
      await this.#failed(node, e instanceof Error ? e.message : String(e));
      return;
    }
    try {
      await this.#syncVms(node.id, client);
    } catch (e) {
      this.log.warn({ nodeId: node.id, err: e }, 'cannot sync the VMs of a node');
    }
  }

  async #failed(node: NodeRecord, error: string): Promise<void> {
    const status = await recordPollFailure(this.db, node.id, error, this.config.nodeDownAfterFailures);
    if (status === 'down' && node.status !== 'down') this.log.warn({ nodeId: node.id, error }, 'node is down');
  }

  async #syncVms(nodeId: string, client: Dom0Client): Promise<void> {
    const onNode = await client.vms();
    const records = await listNodeVms(this.db, nodeId);
    const known = new Set(records.map((r) => r.id));
    for (const vm of records) {
      if (this.launcher.busy(vm.id)) continue;
      const report = onNode.get(vm.id);
      if (isTerminal(vm.state)) {
        if (report !== undefined && aliveOnNode(report)) {
          this.log.warn({ vmId: vm.id, nodeId }, 'node runs a VM the manager considers ended; stopping it');
          await client.stopVm(vm.id).catch(() => false);
        }
        continue;
      }
      // `requested` has no node; `scheduled` belongs to its launch task (none here only after a restart, which reconciles it).
      if (vm.state === 'requested' || vm.state === 'scheduled') continue;
      const step = stepFor(vm.state, report === undefined ? { state: 'missing' } : observe(report));
      if (step !== undefined) {
        await transition(this.db, vm.id, {
          from: vm.state,
          to: step.to,
          ...(step.reason === undefined ? {} : { reason: step.reason }),
          ...(report === undefined ? {} : { nodeReport: report }),
        });
      } else if (report !== undefined && !sameReport(report, vm.nodeReport)) {
        await recordNodeReport(this.db, vm.id, report);
      }
      if (vm.state === 'stopping' && step === undefined) this.launcher.resume(vm);
    }
    for (const vmId of onNode.keys()) {
      if (known.has(vmId) || !VM_ID.test(vmId)) continue;
      this.log.warn({ vmId, nodeId }, 'deleting a VM the manager has no record of');
      await client.deleteVm(vmId).catch(() => false);
    }
  }
}
