// The verifier's view of policy: every node's status and AK, the allowlist grouped by
// kernel, the platform reference values. Plain data (Maps, arrays, byte arrays), so it
// can be posted to worker threads as it is.
import type { NodeStatus } from '../store/schema.js';
import type { AllowlistEntry } from './allowlist.js';
import type { PlatformReference } from './platform.js';

export interface NodeFacts {
  readonly status: NodeStatus;
  /** TPMT_PUBLIC of the node's AK. */
  readonly akPublic: Uint8Array;
}

export interface PolicySnapshot {
  /** Increases with every reload in this process. */
  readonly version: number;
  readonly nodes: ReadonlyMap<string, NodeFacts>;
  /** Allowlist entries by kernel digest. */
  readonly allowlist: ReadonlyMap<string, readonly AllowlistEntry[]>;
  readonly platforms: readonly PlatformReference[];
}

export const EMPTY_POLICY: PolicySnapshot = { version: 0, nodes: new Map(), allowlist: new Map(), platforms: [] };

export function buildSnapshot(
  version: number,
  nodes: ReadonlyArray<{ id: string; status: NodeStatus; akPublic: Uint8Array }>,
  allowlist: readonly AllowlistEntry[],
  platforms: readonly PlatformReference[],
): PolicySnapshot {
  const byKernel = new Map<string, AllowlistEntry[]>();
  for (const e of allowlist) {
    const list = byKernel.get(e.kernel);
    if (list === undefined) byKernel.set(e.kernel, [e]);
    else list.push(e);
  }
  return { version, nodes: new Map(nodes.map((n) => [n.id, { status: n.status, akPublic: n.akPublic }])), allowlist: byKernel, platforms };
}
