// The `schema` step's fast reader (src/ca/verifier/evidence-reader.ts) against its oracle,
// EvidenceSchema: whatever JSON the reader accepts, the schema accepts with an equal value;
// whatever the schema accepts, the reader accepts too, unless the input has a `__proto__`
// key (which zod strips and the reader leaves to zod). Inputs: real evidence from a software
// TPM, mutated at every path (values replaced, keys removed or added, strings edited near
// their patterns, numbers at their bounds), arbitrary JSON, and evidence-shaped documents
// built from each field's pattern.
import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import fc from 'fast-check';
import { readEvidence } from '../../src/ca/verifier/evidence-reader.js';
import { EvidenceSchema, type Evidence } from '../../src/protocol/messages.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { SimNode } from './support/sim-node.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = ReadonlyArray<string | number>;

let samples: Evidence[] = [];

before(async () => {
  const node = await SimNode.create({ nodeId: 'reader-node' });
  samples = [
    await node.evidence(),
    await node.evidence(node.claims({ initrd: sha256Digest('initrd'), cmdline: sha256Digest('cmdline'), authorizedKeyFp: `SHA256:${'A'.repeat(43)}`, sshHostKey: `${node.claims().sshHostKey} user@host "quoted" \\`, time: 0 })),
  ];
  await node.dispose();
});

function hasProtoKey(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  if (Array.isArray(v)) return v.some(hasProtoKey);
  return Object.keys(v).some((k) => k === '__proto__' || hasProtoKey((v as Record<string, unknown>)[k]));
}

/** The contract, for one input as JSON.parse made it. */
function check(json: unknown): void {
  const fast = readEvidence(json);
  const oracle = EvidenceSchema.safeParse(json);
  if (fast !== undefined) {
    assert.ok(oracle.success, `the reader accepted what EvidenceSchema refuses: ${JSON.stringify(json).slice(0, 300)}`);
    assert.deepStrictEqual(fast, oracle.data);
  } else if (oracle.success) {
    assert.ok(hasProtoKey(json), `the reader declined valid evidence: ${JSON.stringify(json).slice(0, 300)}`);
  }
}

/** Every path into a JSON value (the root excluded). */
function pathsOf(v: Json, at: Path = []): Path[] {
  if (typeof v !== 'object' || v === null) return [];
  const keys: Array<string | number> = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return keys.flatMap((k) => [[...at, k], ...pathsOf((v as Record<string | number, Json>)[k] as Json, [...at, k])]);
}

function parentOf(doc: Json, path: Path): Record<string | number, Json> {
  let node = doc as Record<string | number, Json>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, Json>;
  return node;
}

/** Sets an own property, even `__proto__` (as JSON.parse would). */
function setOwn(o: object, key: string, value: Json): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

const CHARS = [...'aAzZ09-_.:+/= ~\t\n"\\é\u0000', '\ud800', '😀'];
const editString = (s: string): fc.Arbitrary<string> =>
  fc.oneof(
    fc.nat(s.length).map((i) => s.slice(0, i) + s.slice(i + 1)),
    fc.tuple(fc.nat(s.length), fc.constantFrom(...CHARS)).map(([i, c]) => s.slice(0, i) + c + s.slice(i)),
    fc.tuple(fc.nat(Math.max(0, s.length - 1)), fc.constantFrom(...CHARS)).map(([i, c]) => s.slice(0, i) + c + s.slice(i + 1)),
    fc.nat(s.length).map((i) => s.slice(0, i)),
    fc.constant(s + s),
    fc.constant(s.toUpperCase()),
    fc.constant('x'.repeat(254)),
  );

const NUMBERS = [0, -0, 1, -1, 0.5, 23, 24, 2 ** 40, 2 ** 40 + 1, 0xffff_ffff, 0x1_0000_0000, 1e300, Number.MAX_SAFE_INTEGER];
const EXTRA_KEYS = ['extra', '__proto__', 'constructor', 'toString', 'initrd', 'cmdline', 'authorizedKeyFp', 'time', '0', '23', '24', '00', 'sha1', 'alg'];

/** One mutation of a sample at one of its paths. */
const mutated: fc.Arbitrary<unknown> = fc
  .tuple(fc.nat(), fc.nat(), fc.nat(), fc.jsonValue() as fc.Arbitrary<Json>, fc.constantFrom(...EXTRA_KEYS), fc.constantFrom(...NUMBERS))
  .chain(([which, pathIndex, op, value, extraKey, number]) => {
    const doc = structuredClone(samples[which % samples.length]) as unknown as Json;
    const paths = pathsOf(doc);
    const path = paths[pathIndex % paths.length] as Path;
    const parent = parentOf(doc, path);
    const key = path[path.length - 1] as string | number;
    const current = parent[key] as Json;
    const done = (): fc.Arbitrary<unknown> => fc.constant(JSON.parse(JSON.stringify(doc)) as unknown);
    switch (op % 6) {
      case 0:
        parent[key] = value;
        return done();
      case 1:
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else Reflect.deleteProperty(parent, key);
        return done();
      case 2:
        if (Array.isArray(current)) current.push(structuredClone(current[0] ?? value));
        else if (typeof current === 'object' && current !== null) setOwn(current, extraKey, value);
        else setOwn(parent, extraKey, value);
        return done();
      case 3:
        parent[key] = typeof current === 'number' ? number : value;
        return done();
      default:
        if (typeof current !== 'string') {
          parent[key] = number;
          return done();
        }
        return editString(current).map((s) => {
          parent[key] = s;
          return JSON.parse(JSON.stringify(doc)) as unknown;
        });
    }
  });

/** Evidence-shaped documents whose fields come from (near) their own patterns. */
const shaped: fc.Arbitrary<unknown> = fc
  .record({
    nodeId: fc.oneof(fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/), fc.string()),
    nonce: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{43}$/), fc.string()),
    hostname: fc.oneof(fc.stringMatching(/^[a-z0-9.-]{1,260}$/), fc.domain()),
    sshHostKey: fc.oneof(fc.stringMatching(/^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/]{0,80}={0,3}( [ -~]{0,210})?$/), fc.string()),
    time: fc.oneof(fc.integer(), fc.double(), fc.constantFrom(...NUMBERS)),
    pcrKey: fc.oneof(fc.stringMatching(/^[0-9]{1,3}$/), fc.string()),
    attest: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{0,1400}$/), fc.base64String()),
    eventType: fc.oneof(fc.integer({ min: -1, max: 2 ** 33 }), fc.constantFrom(...NUMBERS)),
    // short base64url texts: every last character at every length mod 4 (canonical or not)
    event: fc.stringMatching(/^[A-Za-z0-9_-]{0,11}$/),
    signature: fc.stringMatching(/^[A-Za-z0-9_=-]{0,11}$/),
  })
  .map((f) => {
    const doc = structuredClone(samples[0]) as unknown as { claims: Record<string, Json>; quote: Record<string, Json> & { pcrs: { sha256: Record<string, string> } }; eventLog: Array<Record<string, Json>> };
    Object.assign(doc.claims, { nodeId: f.nodeId, nonce: f.nonce, hostname: f.hostname, sshHostKey: f.sshHostKey, time: f.time });
    doc.quote.attest = f.attest;
    setOwn(doc.quote.pcrs.sha256, f.pcrKey, 'ab'.repeat(32));
    (doc.eventLog[0] as Record<string, Json>)['eventType'] = f.eventType;
    (doc.eventLog[1] as Record<string, Json>)['event'] = f.event;
    doc.quote.signature = f.signature;
    return JSON.parse(JSON.stringify(doc)) as unknown;
  });

it('real evidence takes the fast path, with the value EvidenceSchema gives', () => {
  for (const e of samples) {
    const json = JSON.parse(JSON.stringify(e)) as unknown;
    assert.notEqual(readEvidence(json), undefined);
    check(json);
  }
});

it('mutations of real evidence at every path: the reader never accepts what the schema refuses, nor declines what it accepts', () => {
  fc.assert(fc.property(mutated, check), { numRuns: 4000 });
});

it('evidence-shaped documents with fields near their patterns, and arbitrary JSON', () => {
  fc.assert(fc.property(shaped, check), { numRuns: 3000 });
  fc.assert(fc.property(fc.jsonValue(), check), { numRuns: 1000 });
});

it('bounds: the event log and digest counts, string lengths, base64url canonical form', () => {
  const base = JSON.parse(JSON.stringify(samples[0])) as Evidence;
  const event = base.eventLog[0] as Evidence['eventLog'][number];
  const variants: unknown[] = [
    { ...base, eventLog: Array.from({ length: 1024 }, () => event) },
    { ...base, eventLog: Array.from({ length: 1025 }, () => event) },
    { ...base, eventLog: [] },
    { ...base, eventLog: [{ ...event, digests: [] }] },
    { ...base, eventLog: [{ ...event, digests: Array.from({ length: 4 }, () => event.digests[0]) }] },
    { ...base, eventLog: [{ ...event, digests: Array.from({ length: 5 }, () => event.digests[0]) }] },
    { ...base, eventLog: [{ ...event, event: 'A'.repeat(21_846) }] },
    { ...base, eventLog: [{ ...event, event: 'A'.repeat(21_847) }] },
    { ...base, eventLog: [{ ...event, event: 'AB' }] }, // non-canonical: trailing bits set
    { ...base, eventLog: [{ ...event, event: 'AQ' }] },
    { ...base, eventLog: [{ ...event, event: 'AI' }] },
    { ...base, eventLog: [{ ...event, event: 'AAC' }] },
    { ...base, eventLog: [{ ...event, event: 'AAE' }] },
    { ...base, eventLog: [{ ...event, event: 'A' }] },
    { ...base, quote: { ...base.quote, attest: 'A'.repeat(1366) } },
    { ...base, quote: { ...base.quote, attest: 'A'.repeat(1367) } },
    { ...base, quote: { ...base.quote, pcrs: { sha256: {} } } },
    { ...base, claims: { ...base.claims, hostname: `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}` } },
    { ...base, claims: { ...base.claims, hostname: `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}` } },
    { ...base, claims: { ...base.claims, sshHostKey: `${base.claims.sshHostKey} ${'c'.repeat(200)}` } },
    { ...base, claims: { ...base.claims, sshHostKey: `${base.claims.sshHostKey} ${'c'.repeat(201)}` } },
    { ...base, claims: { ...base.claims, time: 2 ** 40 } },
    { ...base, claims: { ...base.claims, time: 2 ** 40 + 1 } },
    { ...base, claims: { ...base.claims, initrd: null } },
  ];
  const verdicts = variants.map((v) => {
    const json = JSON.parse(JSON.stringify(v)) as unknown;
    check(json);
    return readEvidence(json) !== undefined;
  });
  assert.deepEqual(verdicts, [true, false, true, false, true, false, true, false, false, true, false, false, true, false, true, false, true, true, false, true, false, true, false, false]);
});
