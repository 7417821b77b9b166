// What a hostile dom0 holds in the attack scenarios — exactly what the real dom0 holds:
// the hardware domain's capability (the same object the node hands its dom0), the node's
// disk (every file of the node directory outside device/), and dom0's own HTTPS API. The
// honest parties are the real CA (src/ca) and a user who trusts only the CA's pinned keys.
import { readFileSync, writeFileSync } from 'node:fs';
import type { Jwks } from '../../src/crypto/receipts.js';
import { verifyReceipt } from '../../src/crypto/receipts.js';
import type { ReceiptClaims } from '../../src/protocol/messages.js';
import type { Dom0Capability } from '../../src/node/hypervisor/index.js';
import type { NodePaths } from '../../src/node/config.js';
import type { Cluster } from '../node/support/cluster.js';

export interface HostileDom0 {
  readonly capability: Dom0Capability;
  readonly disk: NodePaths;
  /** Rewrites a file on the node's disk. */
  rewrite(path: string, change: (bytes: Buffer) => Buffer | string): void;
}

export function hostileDom0(c: Cluster): HostileDom0 {
  return {
    capability: c.node.hypervisor.dom0,
    disk: c.init.paths,
    rewrite: (path, change) => writeFileSync(path, change(readFileSync(path))),
  };
}

/** The user's side: the receipt the CA holds for `nonce`, verified with the CA's pinned keys; undefined when the CA has none. */
export async function userFetchesReceipt(c: Cluster, nonce: string): Promise<ReceiptClaims | undefined> {
  let found;
  try {
    found = await c.ca.client.receipt(nonce);
  } catch (e) {
    if ((e as { code?: string }).code === 'NOT_FOUND') return undefined;
    throw e;
  }
  const identity = await c.ca.client.keys();
  return verifyReceipt(found.receipt, { keys: identity.receiptKeys as Jwks, issuer: identity.issuer, expectedNonce: nonce });
}

/** Every decision the CA recorded, oldest first. */
export async function caDecisions(c: Cluster): Promise<Array<{ outcome: string; nonce?: string; vm?: string; code?: string }>> {
  return (await c.ca.admin.decisions()).decisions;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
