// The launch gate (claims 4, 8, 10; DESIGN.md §3.1), as a pipeline of named steps:
//   1. copy the image dom0 handed over into a new domain's memory, which dom0 cannot reach
//   2. hash THE COPY (never dom0's buffer again: no time-of-check/time-of-use gap)
//   3. compare with the digest frozen in the launch policy at boot
//   4. on a match: extend PCR 12 and log the event; assign the auth device (IOMMU context
//      entry + MMIO grant); start the domain
//   on a mismatch (or any failure): destroy the domain, leave the device in quarantine,
//   record a security event.
import { createHash } from 'node:crypto';
import { TrustlaunchError } from '../../protocol/errors.js';
import { formatDigest, type Digest } from '../../protocol/digest.js';
import type { MiniDomainLaunch } from './capabilities.js';
import type { DomainId } from './domain-id.js';
import type { LaunchPolicy } from './launch-policy.js';
import type { DomainMemory } from './memory.js';

export type GateStep = 'copied' | 'hash-chunk' | 'hashed' | 'refused' | 'measured' | 'device-assigned' | 'started';

/** Hashing works through the copy in chunks (each one traced), so a large image never stalls the node. */
export const HASH_CHUNK_BYTES = 1 << 20;
/** The longest the hash runs without letting the event loop turn. */
export const YIELD_AFTER_MS = 10;

export interface StagedImage {
  readonly domainId: DomainId;
  readonly memory: DomainMemory;
  readonly imageBytes: number;
}

/** What the gate needs from the hypervisor; each member is one named step's effect. */
export interface GateHost {
  readonly policy: LaunchPolicy;
  /** Step 1, synchronous: a new mini-domain (building) holding a copy of `image` (or its transferred pages). */
  stage(image: Uint8Array | ArrayBuffer): StagedImage;
  /** Step 4a: PCR 12 extend and event-log entry. */
  measure(domainId: DomainId, digest: Digest): Promise<MiniDomainLaunch>;
  /** Step 4b: the domain runs and receives the auth device (context entry + MMIO grant). */
  assignDevice(domainId: DomainId): void;
  /** Step 4c: start the domain's code. */
  start(domainId: DomainId, imageBytes: number): Promise<void>;
  /** Failure path: destroy the domain (its device, if any, back to quarantine). */
  destroy(domainId: DomainId, reason: string): Promise<void>;
  refused(domainId: DomainId, expected: Digest, actual: Digest): void;
  trace(step: GateStep, domainId: DomainId): void;
}

export function launchThroughGate(host: GateHost, image: Uint8Array | ArrayBuffer): Promise<MiniDomainLaunch> {
  // Step 1 runs before this function first yields: once it returns, dom0's buffer is no longer read.
  const staged = host.stage(image);
  host.trace('copied', staged.domainId);
  return finishGate(host, staged);
}

async function finishGate(host: GateHost, staged: StagedImage): Promise<MiniDomainLaunch> {
  const { domainId } = staged;
  try {
    const digest = await hashTheCopy(staged.memory, staged.imageBytes, () => host.trace('hash-chunk', domainId));
    host.trace('hashed', domainId);
    compareWithPolicy(host, domainId, digest);
    const launch = await host.measure(domainId, digest);
    host.trace('measured', domainId);
    host.assignDevice(domainId);
    host.trace('device-assigned', domainId);
    await host.start(domainId, staged.imageBytes);
    host.trace('started', domainId);
    return launch;
  } catch (e) {
    await host.destroy(domainId, e instanceof Error ? e.message : String(e));
    throw e;
  }
}

/**
 * SHA-256 of `length` bytes of a domain's memory from `gpa` on, chunk by chunk, yielding to
 * the event loop whenever YIELD_AFTER_MS have passed (a large image never stalls the node
 * for longer; a small one is hashed in one turn, without paying for yields it does not need).
 */
export async function hashTheCopy(memory: DomainMemory, length: number, onChunk: () => void = () => undefined, gpa = 0): Promise<Digest> {
  const hash = createHash('sha256');
  let at = 0;
  let slice = performance.now();
  do {
    onChunk();
    const n = Math.min(HASH_CHUNK_BYTES, length - at);
    memory.scan(gpa + at, n, (bytes) => hash.update(bytes));
    at += n;
    if (performance.now() - slice >= YIELD_AFTER_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      slice = performance.now();
    }
  } while (at < length);
  return formatDigest(hash.digest());
}

function compareWithPolicy(host: GateHost, domainId: DomainId, digest: Digest): void {
  const expected = host.policy.miniDomainDigest;
  if (digest === expected) return;
  host.refused(domainId, expected, digest);
  host.trace('refused', domainId);
  throw new TrustlaunchError('LAUNCH_DIGEST_MISMATCH', `the mini-domain image hashes to ${digest}; the launch policy frozen at boot requires ${expected}`, {
    detail: { expected, actual: digest },
  });
}
