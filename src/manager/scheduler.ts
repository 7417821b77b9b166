// Placement policies behind one interface (DESIGN.md §5: "pluggable; default
// least-loaded active node"). A policy sees only nodes and the request; it never picks a
// node that is not up and healthy, that runs another VM backend than the image needs
// (a kernel bundle boots only under QEMU, a raw image is a process-VM guest: dom0 on the
// other backend answers UNSUPPORTED or cannot boot it), or that lacks a VM slot or the
// memory the VM needs.
import { VM_BACKENDS, type VmBackendKind } from '../node/config.js';
import type { ImageKind } from './images/catalog.js';

export { VM_BACKENDS, type VmBackendKind };

export interface NodeLoad {
  readonly id: string;
  readonly status: 'joining' | 'up' | 'down';
  readonly memoryTotalMiB: number;
  readonly memoryUsedMiB: number;
  readonly vmCount: number;
  /** How many VMs the node runs at most. */
  readonly maxVms: number;
  /** The node's own health word; only `ok` nodes take VMs (degraded: its mini-domain is not running). */
  readonly health: string | null;
  /** The VM backend the node last reported (GET /v1/node `vm.backend`); null until it did. */
  readonly vmBackend: VmBackendKind | null;
}

export interface PlacementRequest {
  readonly memoryMiB: number;
  /** The backend that can run the image (backendFor). */
  readonly backend: VmBackendKind;
}

/** Which VM backend runs an image of this kind: bundles are QEMU's, raw images process VMs'. */
export function backendFor(kind: ImageKind): VmBackendKind {
  return kind === 'bundle' ? 'qemu' : 'process';
}

export interface Scheduler {
  readonly name: SchedulerName;
  /** The node to place the VM on, or undefined when no node qualifies. */
  pick<N extends NodeLoad>(nodes: readonly N[], request: PlacementRequest): N | undefined;
}

export const SCHEDULER_NAMES = ['least-loaded', 'bin-pack'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** Up and healthy, on the image's backend, with a VM slot and enough free memory for the request. */
export function qualifies(node: NodeLoad, request: PlacementRequest): boolean {
  return (
    node.status === 'up' &&
    node.health === 'ok' &&
    node.vmBackend === request.backend &&
    node.vmCount < node.maxVms &&
    node.memoryTotalMiB > 0 &&
    node.memoryTotalMiB - node.memoryUsedMiB >= request.memoryMiB
  );
}

/** a's used/total compared with b's, exactly (cross-multiplied integers, no rounding). */
function compareLoad(a: NodeLoad, b: NodeLoad): number {
  return a.memoryUsedMiB * b.memoryTotalMiB - b.memoryUsedMiB * a.memoryTotalMiB;
}

/** Picks the qualifying node that `better` orders first; ties go to fewer VMs, then the smaller id. */
function pickBy<N extends NodeLoad>(nodes: readonly N[], request: PlacementRequest, better: (a: N, b: N) => number): N | undefined {
  let best: N | undefined;
  for (const n of nodes) {
    if (!qualifies(n, request)) continue;
    if (best === undefined) {
      best = n;
      continue;
    }
    const order = better(n, best) || n.vmCount - best.vmCount || (n.id < best.id ? -1 : n.id > best.id ? 1 : 0);
    if (order < 0) best = n;
  }
  return best;
}

/** The default: the node with the smallest share of its memory in use — spreads load evenly. */
export const leastLoaded: Scheduler = {
  name: 'least-loaded',
  pick: (nodes, request) => pickBy(nodes, request, compareLoad),
};

/** Fills nodes up before using the next: the node left with the least free memory — frees whole nodes. */
export const binPack: Scheduler = {
  name: 'bin-pack',
  pick: (nodes, request) => pickBy(nodes, request, (a, b) => a.memoryTotalMiB - a.memoryUsedMiB - (b.memoryTotalMiB - b.memoryUsedMiB)),
};

export function schedulerNamed(name: SchedulerName): Scheduler {
  return name === 'bin-pack' ? binPack : leastLoaded;
}
