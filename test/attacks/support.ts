// What a hostile dom0 holds in the attack scenarios — exactly what the real dom0 holds:
// the hardware domain's capability (the same object the node hands its dom0), the node's
// disk (every file of the node directory outside device/), and dom0's own HTTPS API. The
// honest parties are the real CA (src/ca) and a user who trusts only the CA's pinned keys.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Evidence, LaunchClaims } from '../../src/protocol/messages.js';
import { makeEvidence } from '../../src/node/minidomain/evidence.js';
import { openSoftwareTpm } from '../../src/tpm/sim/device.js';
import { sha256Of, type TcgEvent } from '../../src/tpm/eventlog/event.js';
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
  return verifyReceipt(found.receipt, { keys: identity.receiptKeys, issuer: identity.issuer, expectedNonce: nonce });
}

/** The user's verdict for `nonce`: true only for a receipt that verifies with the pinned keys and says affirming. */
export async function userAccepts(c: Cluster, nonce: string): Promise<boolean> {
  const claims = await userFetchesReceipt(c, nonce);
  return claims?.['ear.status'] === 'affirming';
}

/** Every decision the CA recorded, oldest first. */
export async function caDecisions(c: Cluster): Promise<Array<{ outcome: string; nonce?: string | undefined; vm?: string | undefined; code?: string | undefined }>> {
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

/**
 * Genuine evidence from this node's own device, as the mini-domain makes it — the stand-in
 * for a message an attacker recorded. The node must be stopped (the device is the test's
 * for a moment): the device's PCRs are brought back in step with `eventLog` (what the
 * hypervisor does after a power cycle), then the node's AK quotes the claims.
 */
export async function recordedEvidence(c: Cluster, eventLog: readonly TcgEvent[], claims: LaunchClaims): Promise<Evidence> {
  const device = openSoftwareTpm(join(c.init.paths.device, 'tpm-state.json'));
  await device.powerOn();
  try {
    for (const e of eventLog) await device.pcrExtend(e.pcrIndex, sha256Of(e) as Buffer);
    const ak = await device.ensureAttestationKey('ecc-p256');
    return await makeEvidence({ device, ak, claims, eventLog });
  } finally {
    await device.powerOff();
  }
}
