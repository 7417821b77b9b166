// What a judge thread remembers between evidence (verifier/measurements.ts) and the claims'
// qualifying data written directly (verifier/qualifying-data.ts): with the cache, every
// verdict is the one the pipeline gives without it — the same log with a quote whose PCRs
// it does not replay to is still refused, a policy change still changes the platform
// verdict, a malformed log still fails — and the canonical claims equal canonicalBytes for
// every schema-valid claims value.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import fc from 'fast-check';
import { buildSnapshot, type PolicySnapshot } from '../../src/ca/policy/snapshot.js';
import { MeasurementCache, replayLog } from '../../src/ca/verifier/measurements.js';
import { judgeEvidence, type JudgeOptions, type Verdict } from '../../src/ca/verifier/pipeline.js';
import { canonicalClaims } from '../../src/ca/verifier/qualifying-data.js';
import { canonicalize } from '../../src/protocol/canonical-json.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { LaunchClaimsSchema, type Evidence, type LaunchClaims } from '../../src/protocol/messages.js';
import { PCR } from '../../src/protocol/pcrs.js';
import { replay } from '../../src/tpm/eventlog/replay.js';
import { toTcgEvents } from '../../src/ca/verifier/measurements.js';
import { defaultMeasurements, SimNode } from './support/sim-node.js';

const KERNEL = sha256Digest('kernel image');
let node: SimNode;
let other: SimNode;
let policy: PolicySnapshot;

before(async () => {
  node = await SimNode.create({ nodeId: 'node-1' });
  other = await SimNode.create({ nodeId: 'node-2', measurements: defaultMeasurements('other') });
  policy = snapshot(1, [{ ...node.platformReference('trusted'), createdAt: 1 }]);
});
after(async () => {
  await node.dispose();
  await other.dispose();
});

function snapshot(version: number, platforms: Parameters<typeof buildSnapshot>[3]): PolicySnapshot {
  return buildSnapshot(
    version,
    [
      { id: 'node-1', status: 'active', akPublic: node.ak.public },
      { id: 'node-2', status: 'active', akPublic: other.ak.public },
    ],
    [{ name: 'kernel', kernel: KERNEL, createdAt: 1 }],
    platforms,
  );
}

/** The verdict with and without a cache must agree; returns it. */
function judgeBoth(evidence: Evidence | string, cache: MeasurementCache, opts: Partial<JudgeOptions> = {}): Verdict {
  const body = typeof evidence === 'string' ? evidence : JSON.stringify(evidence);
  const base: JudgeOptions = { policy, now: Date.now(), skewSeconds: 300, fresh: true, ...opts };
  const without = judgeEvidence(body, base);
  const withCache = judgeEvidence(body, { ...base, measurements: cache });
  assert.deepStrictEqual(withCache, without);
  return withCache;
}

function outcome(v: Verdict): string {
  return v.kind === 'refused' || v.kind === 'malformed' ? `${v.refusal.step}:${v.refusal.code}` : v.kind;
}

it('replay remembered per log: the same values as replaying it, computed once', () => {
  const cache = new MeasurementCache();
  const log = node.eventLog;
  const first = cache.replay(log);
  assert.deepStrictEqual(first.values, replay(toTcgEvents(log)));
  assert.equal(cache.replay(structuredClone(log)), first, 'an equal log is the same entry');
  assert.deepStrictEqual(replayLog(log).values, first.values);
});

it('every verdict equals the uncached one: affirmed, then the same log with PCRs it does not replay to, malformed logs, platform changes', async () => {
  const cache = new MeasurementCache();
  const good = await node.evidence(node.claims({ kernel: KERNEL }));
  assert.equal(outcome(judgeBoth(good, cache)), 'affirmed');
  assert.equal(outcome(judgeBoth(await node.evidence(node.claims({ kernel: KERNEL })), cache)), 'affirmed');

  // The log stays what the cache holds; the TPM's PCR 12 moves on: the quote no longer matches the remembered replay.
  await node.tamper(PCR.MINIDOMAIN);
  const drifted = await node.evidence(node.claims({ kernel: KERNEL }));
  assert.deepEqual(drifted.eventLog, good.eventLog);
  assert.equal(outcome(judgeBoth(drifted, cache)), 'eventLog:EVENT_LOG_REPLAY_MISMATCH');

  // A log with two digests in one event, or one that replays to other values
  const twoDigests = structuredClone(good);
  const first = twoDigests.eventLog[0] as Evidence['eventLog'][number];
  twoDigests.eventLog[0] = { ...first, digests: [...first.digests, ...first.digests] };
  assert.equal(outcome(judgeBoth(twoDigests, cache)), 'eventLog:EVENT_LOG_MALFORMED');
  assert.equal(outcome(judgeBoth(twoDigests, cache)), 'eventLog:EVENT_LOG_MALFORMED');

  // Another node's log and quote: replays, but no reference describes that platform…
  const foreign = await other.evidence(other.claims({ kernel: KERNEL }));
  assert.equal(outcome(judgeBoth(foreign, cache)), 'platform:PLATFORM_NOT_TRUSTED');
  // …until one does (a new snapshot), and not after it is removed again.
  policy = snapshot(2, [{ ...node.platformReference('trusted'), createdAt: 1 }, { ...other.platformReference('other'), createdAt: 2 }]);
  const accepted = judgeBoth(await other.evidence(other.claims({ kernel: KERNEL })), cache);
  assert.deepEqual([accepted.kind, accepted.kind === 'affirmed' ? accepted.platform : undefined], ['affirmed', 'other']);
  policy = snapshot(3, [{ ...node.platformReference('trusted'), createdAt: 1 }]);
  assert.equal(outcome(judgeBoth(await other.evidence(other.claims({ kernel: KERNEL })), cache)), 'platform:PLATFORM_NOT_TRUSTED');
  // and a miss on a snapshot that may be stale is still "stale", cache or not
  assert.equal(outcome(judgeBoth(await other.evidence(other.claims({ kernel: KERNEL })), cache, { fresh: false })), 'stale');
});

it('the cache stays correct past its capacity (logs of many distinct nodes)', async () => {
  const cache = new MeasurementCache();
  const evidence = await other.evidence(other.claims({ kernel: KERNEL }));
  for (let i = 0; i < 300; i++) {
    // distinct logs: an EV_NO_ACTION event with its own data extends nothing
    const log = [...evidence.eventLog, { pcrIndex: 0, eventType: 3, digests: [{ alg: 'sha256' as const, digest: sha256Digest(String(i)).slice(7) }], event: Buffer.from(`n${i}`).toString('base64url') }];
    assert.deepStrictEqual(cache.replay(log).values, replay(toTcgEvents(log)));
  }
  assert.deepStrictEqual(cache.replay(evidence.eventLog).values, replay(toTcgEvents(evidence.eventLog)));
});

const CLAIM_FIELDS = {
  nodeId: fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/),
  vmId: fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/),
  nonce: fc.stringMatching(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/),
  hostname: fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?(?:\.[a-z0-9]{1,10}){0,3}$/),
  kernel: fc.stringMatching(/^sha256:[0-9a-f]{64}$/),
  sshHostKey: fc.stringMatching(/^(ssh-ed25519|ecdsa-sha2-nistp256) [A-Za-z0-9+/]{1,80}={0,2}(?: [\x20-\x7e]{0,200})?$/),
  time: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.constant(-0)),
};
const OPTIONAL_FIELDS = {
  initrd: fc.stringMatching(/^sha256:[0-9a-f]{64}$/),
  cmdline: fc.stringMatching(/^sha256:[0-9a-f]{64}$/),
  authorizedKeyFp: fc.stringMatching(/^SHA256:[A-Za-z0-9+/]{43}$/),
};

it('canonical claims: equal to canonicalize for every schema-valid claims value, whatever its key order', () => {
  const claims = fc.record({ ...CLAIM_FIELDS, ...OPTIONAL_FIELDS }, { requiredKeys: Object.keys(CLAIM_FIELDS) as Array<keyof typeof CLAIM_FIELDS> });
  fc.assert(
    fc.property(claims, fc.boolean(), (c, reverse) => {
      const value = reverse ? (Object.fromEntries(Object.entries(c).reverse()) as typeof c) : c;
      const parsed = LaunchClaimsSchema.safeParse(JSON.parse(JSON.stringify(value)));
      fc.pre(parsed.success);
      const data = parsed.data;
      assert.equal(canonicalClaims(data), canonicalize(data));
      assert.equal(canonicalClaims(value as LaunchClaims), canonicalize(value));
    }),
    { numRuns: 3000 },
  );
});
