// The manager's operations, independent of HTTP: what the routes call, what tests drive.
// Users see only their own VMs (another user's VM is NOT_FOUND, never FORBIDDEN: its
// existence is not revealed); nodes, images and users are the admin's.
import type { Kysely } from 'kysely';
import { TrustlaunchError } from '../protocol/errors.js';
import type { VmCreateRequest } from '../protocol/messages.js';
import type { ManagerConfig } from './config.js';
import type { ManagerSchema } from './db/schema.js';
import { ImageDelivery } from './delivery.js';
import { Dom0Pool } from './dom0-pool.js';
import type { BlobStore } from './images/blob-store.js';
import { ImageCatalog } from './images/catalog.js';
import { VM_ID } from './ids.js';
import { createJoinToken } from './join-tokens.js';
import { Launcher } from './launcher.js';
import { isTerminal, type VmState } from './lifecycle.js';
import { silentLog, type Log } from './log.js';
import { NodeMonitor } from './monitor.js';
import { Mutex } from './mutex.js';
import { deleteNode, joinNode, listNodes, requireNode, type NodeJoinRequest, type NodeState } from './nodes.js';
import { reconcileVms, type ReconcileSummary } from './reconcile.js';
import { backendFor, schedulerNamed, type PlacementRequest, type Scheduler } from './scheduler.js';
import type { User } from './users.js';
import {
  activePlacements,
  deleteVmRecord,
  findUserVm,
  getVm,
  insertVm,
  listNodeVms,
  listUserVms,
  transition,
  type VmRecord,
} from './vms.js';

export interface ManagerServiceOptions {
  readonly db: Kysely<ManagerSchema>;
  readonly config: ManagerConfig;
  readonly blobs: BlobStore;
  readonly log?: Log;
  /** Replaces the policy the config names (tests, embedding). */
  readonly scheduler?: Scheduler;
}

const STOPPABLE: readonly VmState[] = ['requested', 'scheduled', 'booting', 'attesting', 'running'];

export class ManagerService {
  readonly db: Kysely<ManagerSchema>;
  readonly config: ManagerConfig;
  readonly images: ImageCatalog;
  readonly scheduler: Scheduler;
  readonly pool: Dom0Pool;
  readonly launcher: Launcher;
  readonly monitor: NodeMonitor;
  readonly #log: Log;
  /** Placement reads loads and then records its choice: two in-process placements must not interleave. */
  readonly #placement = new Mutex();

  constructor(opts: ManagerServiceOptions) {
    this.db = opts.db;
    this.config = opts.config;
    this.#log = opts.log ?? silentLog;
    this.images = new ImageCatalog(opts.db, opts.blobs, opts.config.maxBlobBytes);
    this.scheduler = opts.scheduler ?? schedulerNamed(opts.config.scheduler);
    this.pool = new Dom0Pool(opts.db, { timeoutMs: opts.config.nodeRequestTimeoutMs });
    this.launcher = new Launcher({ db: opts.db, config: opts.config, pool: this.pool, delivery: new ImageDelivery(opts.db, opts.blobs), log: this.#log });
    this.monitor = new NodeMonitor(opts.db, opts.config, this.pool, this.launcher, this.#log);
  }

  /** Reconciles every VM left mid-way by a previous run, then starts polling nodes. */
  async start(): Promise<ReconcileSummary> {
    const summary = await reconcileVms(this.db, this.pool, this.launcher, this.#log);
    this.monitor.start();
    return summary;
  }

  async close(): Promise<void> {
    await this.monitor.stop();
    await this.launcher.close();
    await this.pool.close();
  }

  // --- VMs (a user's own) -------------------------------------------------------------

  /**
   * DESIGN.md §4.2 steps 1–2: records the request, places it on a node that runs the
   * image's VM backend, and starts copying the image and the nonce there. Resolves once
   * the VM is `scheduled`. No record is kept when no node can take it: NO_NODE_FOR_IMAGE
   * when nodes are up but none runs that backend, else NO_NODE_AVAILABLE.
   */
  async createVm(user: User, request: VmCreateRequest): Promise<VmRecord> {
    if (request.name !== undefined && VM_ID.test(request.name)) {
      throw new TrustlaunchError('MALFORMED_REQUEST', 'name: names of the form vm-<16 base32> are reserved for VM ids');
    }
    const image = await this.images.resolve(request.image);
    const vm = await insertVm(this.db, {
      userId: user.id,
      name: request.name,
      imageRef: request.image,
      imageDigest: image.digest,
      imageKind: image.kind,
      nonce: request.nonce,
      sshPublicKey: request.sshPublicKey,
      memoryMiB: this.config.vmMemoryMiB,
    });
    const placed = await this.#place(vm);
    if (placed === 'no-capacity' || placed === 'no-backend') {
      await deleteVmRecord(this.db, vm.id);
      const backend = backendFor(vm.imageKind);
      if (placed === 'no-backend') {
        const what = vm.imageKind === 'bundle' ? 'is a kernel bundle, which only a QEMU node boots (node serve --vm-backend qemu)' : 'is a raw image, which only a process-VM node runs';
        throw new TrustlaunchError('NO_NODE_FOR_IMAGE', `no node that is up runs ${backend} VMs: image ${request.image} ${what}`);
      }
      throw new TrustlaunchError('NO_NODE_AVAILABLE', `no ${backend} node that is up has a VM slot and ${vm.memoryMiB} MiB free for this VM`);
    }
    if (placed.state === 'scheduled') this.launcher.launch(placed.id);
    return placed;
  }

  /** Places a requested VM; if it was stopped or deleted meanwhile, what became of it. */
  async #place(vm: VmRecord): Promise<VmRecord | 'no-capacity' | 'no-backend'> {
    // After a start, the nodes' backends are known once each was polled.
    await this.monitor.firstRound();
    return this.#placement.run(async () => {
      const nodes = await this.nodeLoads();
      const request: PlacementRequest = { memoryMiB: vm.memoryMiB, backend: backendFor(vm.imageKind) };
      const node = this.scheduler.pick(nodes, request);
      if (node === undefined) return noNodeBecause(nodes, request);
      const scheduled = await transition(this.db, vm.id, { from: 'requested', to: 'scheduled', nodeId: node.id });
      if (scheduled !== undefined) return scheduled;
      const now = await getVm(this.db, vm.id);
      if (now === undefined) throw new TrustlaunchError('NOT_FOUND', `VM ${vm.name} was deleted while it was placed`);
      return now;
    });
  }

  /**
   * Each node as the scheduler sees it: what the node last reported, or what the manager
   * has placed there and not yet seen end, whichever is more (the node's report lags).
   */
  async nodeLoads(): Promise<NodeState[]> {
    const placed = await activePlacements(this.db);
    return (await listNodes(this.db)).map((record) => {
      const n = this.monitor.withBackend(record);
      const p = placed.get(n.id);
      return p === undefined ? n : { ...n, memoryUsedMiB: Math.max(n.memoryUsedMiB, p.memoryMiB), vmCount: Math.max(n.vmCount, p.vms) };
    });
  }

  listVms(user: User): Promise<VmRecord[]> {
    return listUserVms(this.db, user.id);
  }

  /** The user's VM by id or name; NOT_FOUND for anyone else's. */
  async getVm(user: User, ref: string): Promise<VmRecord> {
    const vm = await findUserVm(this.db, user.id, ref);
    if (vm === undefined) throw new TrustlaunchError('NOT_FOUND', `no VM ${ref}`);
    return vm;
  }

  /** Asks for a stop; resolves with the VM in `stopping` (or already ended). */
  async stopVm(user: User, ref: string): Promise<VmRecord> {
    const vm = await this.getVm(user, ref);
    if (vm.state === 'failed') throw new TrustlaunchError('CONFLICT', `VM ${vm.name} has failed; delete it instead`);
    if (vm.state === 'stopped' || vm.state === 'stopping') return vm;
    const stopping = await transition(this.db, vm.id, { from: STOPPABLE, to: 'stopping' });
    if (stopping === undefined) return this.getVm(user, vm.id);
    await this.launcher.stop(vm.id);
    return stopping;
  }

  /** Removes the VM from its node (best effort: an unreachable node deletes it when it is back) and from the records. */
  async deleteVm(user: User, ref: string): Promise<void> {
    const vm = await this.getVm(user, ref);
    await this.launcher.cancel(vm.id);
    if (vm.nodeId !== undefined) {
      try {
        await (await this.pool.get(vm.nodeId)).deleteVm(vm.id);
      } catch (e) {
        this.#log.warn({ vmId: vm.id, nodeId: vm.nodeId, err: e }, 'could not delete the VM on its node now; the node monitor will');
      }
    }
    await deleteVmRecord(this.db, vm.id);
  }

  // --- nodes (admin) ----------------------------------------------------------------

  createJoinToken(ttlMs?: number): ReturnType<typeof createJoinToken> {
    return createJoinToken(this.db, ttlMs ?? this.config.joinTokenTtlMs);
  }

  async joinNode(request: NodeJoinRequest): Promise<NodeState> {
    const node = await joinNode(this.db, request);
    await this.pool.forget(node.id);
    this.monitor.forget(node.id);
    this.#log.info({ nodeId: node.id, endpoint: node.endpoint }, 'node joined');
    // Poll it at once, so it is up (or known down) without waiting for the next round.
    void this.monitor.pollNow();
    return this.monitor.withBackend(node);
  }

  async nodeWithVms(id: string): Promise<{ node: NodeState; vms: VmRecord[] }> {
    const node = this.monitor.withBackend(await requireNode(this.db, id));
    return { node, vms: await listNodeVms(this.db, id) };
  }

  /** Removes a node; its VMs that had not ended have failed (VM_LOST). */
  async removeNode(id: string): Promise<void> {
    await deleteNode(this.db, id);
    await this.pool.forget(id);
    this.monitor.forget(id);
    for (const vm of await listNodeVms(this.db, id)) {
      if (isTerminal(vm.state)) continue;
      await this.launcher.cancel(vm.id);
      const current = await getVm(this.db, vm.id);
      if (current === undefined || isTerminal(current.state)) continue;
      await transition(this.db, vm.id, { from: current.state, to: 'failed', reason: { code: 'VM_LOST', message: `node ${id} was removed from the inventory` } });
    }
  }
}

/**
 * Why no node qualified: none of the nodes that are up (with a known backend) runs the
 * backend the image needs, or those that do are full (or none is up at all).
 */
function noNodeBecause(nodes: readonly NodeState[], request: PlacementRequest): 'no-capacity' | 'no-backend' {
  const up = nodes.filter((n) => n.status === 'up' && n.vmBackend !== null);
  return up.length > 0 && !up.some((n) => n.vmBackend === request.backend) ? 'no-backend' : 'no-capacity';
}
