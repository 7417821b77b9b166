// Event logs: binary TCG PC Client format and JSON form, replay. Oracles: tpm2_eventlog
// must parse the binary logs we write and report our digests and PCR values; replay must
// equal the sequence of extends made on a PCR bank (property); binary ↔ JSON round trips.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { PCR_COUNT } from '../../src/protocol/pcrs.js';
import { TPM_ALG } from '../../src/tpm/constants.js';
import { DEFAULT_SPEC_ID, parseBinaryEventLog, serializeBinaryEventLog } from '../../src/tpm/eventlog/binary.js';
import { EV, eventTypeName } from '../../src/tpm/eventlog/event-types.js';
import { sha256Event, type TcgEvent } from '../../src/tpm/eventlog/event.js';
import { eventsFromJson, eventsToJson } from '../../src/tpm/eventlog/json.js';
import { MeasurementLog } from '../../src/tpm/eventlog/measurement-log.js';
import { checkReplay, replay } from '../../src/tpm/eventlog/replay.js';
import { TpmWriter } from '../../src/tpm/marshal/writer.js';
import { PcrBank } from '../../src/tpm/pcr-bank.js';
import { tempDir } from '../support/system.js';
import { tpm2ok } from '../support/tpm2-tools.js';

/** UEFI_IMAGE_LOAD_EVENT (PC Client PFP §10.2.3) with an empty device path: what tpm2_eventlog expects for EV_EFI_BOOT_SERVICES_APPLICATION. */
function imageLoadEvent(address: bigint, length: bigint): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(address, 0); // ImageLocationInMemory
  b.writeBigUInt64LE(length, 8); // ImageLengthInMemory
  return b; // ImageLinkTimeAddress = 0, LengthOfDevicePath = 0
}

/** TCG_PCR_EVENT header (32 bytes) + our Spec ID event (33 bytes for one bank). */
const HEADER_BYTES = 32 + 33;

/** A boot of the shape trustlaunch's measured boot makes (no EV_NO_ACTION: see the locality test). */
function sampleBoot(): TcgEvent[] {
  return [
    sha256Event(0, EV.EV_S_CRTM_VERSION, Buffer.from('1.0\0', 'utf16le')),
    sha256Event(0, EV.EV_POST_CODE, Buffer.from('POST CODE')),
    sha256Event(4, EV.EV_EFI_BOOT_SERVICES_APPLICATION, imageLoadEvent(0x100000n, 4096n), Buffer.alloc(32, 7)),
    sha256Event(5, EV.EV_EVENT_TAG, Buffer.from('trustlaunch boot config')),
    ...[0, 1, 2, 3, 4, 5, 6, 7].map((pcr) => sha256Event(pcr, EV.EV_SEPARATOR, Buffer.alloc(4))),
    sha256Event(12, EV.EV_IPL, Buffer.from('trustlaunch mini-domain\0')),
    sha256Event(12, EV.EV_COMPACT_HASH, Buffer.from('launch 2')),
  ];
}

interface ToolView {
  readonly digests: string[];
  readonly pcrs: Map<number, string>;
}

/** The event digests and final PCRs from tpm2_eventlog's YAML (first event = the Spec ID header, skipped). */
function runEventlogTool(bytes: Buffer): ToolView {
  const dir = tempDir('tl-evlog-');
  try {
    const path = join(dir.path, 'log.bin');
    writeFileSync(path, bytes);
    const yaml = tpm2ok('tpm2_eventlog', [path]);
    const digests = [...yaml.matchAll(/^ {4}Digest: "([0-9a-f]{64})"$/gm)].map((m) => m[1] as string);
    const pcrSection = yaml.slice(yaml.indexOf('pcrs:'));
    const pcrs = new Map([...pcrSection.matchAll(/^ {4}(\d+)\s*: 0x([0-9A-Fa-f]{64})$/gm)].map((m) => [Number(m[1]), (m[2] as string).toLowerCase()]));
    return { digests, pcrs };
  } finally {
    dir.dispose();
  }
}

const event: fc.Arbitrary<TcgEvent> = fc
  .record({
    pcrIndex: fc.integer({ min: 0, max: PCR_COUNT - 1 }),
    eventType: fc.constantFrom(EV.EV_SEPARATOR, EV.EV_EVENT_TAG, EV.EV_IPL, EV.EV_COMPACT_HASH, EV.EV_POST_CODE, 0x1234),
    data: fc.uint8Array({ maxLength: 64 }),
    digest: fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }),
  })
  .map((e) => sha256Event(e.pcrIndex, e.eventType, e.data, e.digest));

void describe('event log', () => {
  void it('tpm2_eventlog parses our binary log and reports our digests and PCR values', () => {
    const events = sampleBoot();
    const bin = serializeBinaryEventLog(events);
    const tool = runEventlogTool(bin);
    assert.deepEqual(
      tool.digests,
      events.map((e) => e.digests[0]?.digest.toString('hex')),
    );
    const ours = replay(events);
    assert.deepEqual([...tool.pcrs.keys()].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 12]);
    for (const [i, v] of tool.pcrs) assert.equal(ours[i]?.toString('hex'), v, `PCR ${i}`);
  });

  void it('parses its own binary output back to the same events and header', () => {
    const events = sampleBoot();
    const parsed = parseBinaryEventLog(serializeBinaryEventLog(events));
    assert.deepEqual(parsed.specId, DEFAULT_SPEC_ID);
    assert.deepEqual(parsed.events, events);
    assert.equal(eventTypeName(parsed.events[2]?.eventType ?? 0), 'EV_EFI_BOOT_SERVICES_APPLICATION');
  });

  void it('starts PCR 0 at the StartupLocality (PFP §10.4.5.3) and never extends EV_NO_ACTION', () => {
    const locality = { pcrIndex: 0, eventType: EV.EV_NO_ACTION, digests: [{ hashAlg: TPM_ALG.SHA256, digest: Buffer.alloc(32) }], event: Buffer.concat([Buffer.from('StartupLocality\0'), Buffer.of(3)]) };
    const crtm = sha256Event(0, EV.EV_S_CRTM_VERSION, Buffer.from('1.0\0', 'utf16le'));
    const init = Buffer.alloc(32);
    init[31] = 3;
    const bank = new PcrBank((i) => (i === 0 ? init : Buffer.alloc(32)));
    bank.extend(0, crtm.digests[0]?.digest ?? Buffer.alloc(0));
    assert.deepEqual(replay([locality, crtm])[0], bank.read(0));
    const plain = new PcrBank();
    plain.extend(0, crtm.digests[0]?.digest ?? Buffer.alloc(0));
    assert.deepEqual(replay([{ ...locality, event: Buffer.from('not a locality event') }, crtm])[0], plain.read(0), 'other EV_NO_ACTION events change nothing');
    assert.throws(() => replay([crtm, locality]), (e) => isTrustlaunchError(e, 'EVENT_LOG_MALFORMED'));
    // tpm2-tools 5.4 extends EV_NO_ACTION (tpm2-tools issue #3224, fixed in 5.6), so its PCR 0
    // for this log differs from the spec's; it still must parse the log and show our digests.
    const tool = runEventlogTool(serializeBinaryEventLog([locality, crtm]));
    assert.deepEqual(tool.digests, [Buffer.alloc(32).toString('hex'), crtm.digests[0]?.digest.toString('hex')]);
  });

  void it('replay equals the sequence of extends on a PCR bank (property)', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 40 }), (events) => {
        const bank = new PcrBank();
        const log = new MeasurementLog(bank);
        for (const e of events) log.measure(e.pcrIndex, e.eventType, e.event, e.digests[0]?.digest);
        const replayed = replay(log.events);
        for (let i = 0; i < PCR_COUNT; i++) assert.deepEqual(replayed[i], bank.read(i));
        checkReplay(log.events, bank.readMany([0, 4, 5, 12]));
      }),
      { numRuns: 200 },
    );
  });

  void it('binary ↔ JSON round trip (property)', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 30 }), (events) => {
        const json = eventsToJson(events);
        const fromJson = eventsFromJson(JSON.parse(JSON.stringify(json)));
        assert.deepEqual(fromJson, events);
        const bin = serializeBinaryEventLog(fromJson);
        assert.deepEqual(parseBinaryEventLog(bin).events, events);
        assert.deepEqual(eventsToJson(parseBinaryEventLog(bin).events), json);
        assert.deepEqual(serializeBinaryEventLog(eventsFromJson(eventsToJson(parseBinaryEventLog(bin).events))), bin);
      }),
      { numRuns: 200 },
    );
  });

  void it('checkReplay names the PCR whose quoted value the log does not explain', () => {
    const events = sampleBoot();
    const pcrs = replay(events);
    const quoted = new Map([
      [0, pcrs[0] as Buffer],
      [12, Buffer.alloc(32, 1)],
    ]);
    assert.throws(
      () => checkReplay(events, quoted),
      (e) => isTrustlaunchError(e, 'EVENT_LOG_REPLAY_MISMATCH') && e.detail?.['pcr'] === 12,
    );
    // dropping the last mini-domain event is detected the same way
    assert.throws(() => checkReplay(events.slice(0, -1), new Map([[12, pcrs[12] as Buffer]])), (e) => isTrustlaunchError(e, 'EVENT_LOG_REPLAY_MISMATCH'));
  });

  void it('rejects malformed binary logs with EVENT_LOG_MALFORMED, bounding sizes before reading', () => {
    const good = serializeBinaryEventLog(sampleBoot());
    const bad = (bytes: Buffer, re: RegExp): void => {
      assert.throws(() => parseBinaryEventLog(bytes), (e) => isTrustlaunchError(e, 'EVENT_LOG_MALFORMED') && re.test(e.message));
    };
    bad(good.subarray(0, good.length - 1), /needs \d+ bytes/);
    bad(Buffer.concat([good, Buffer.of(1)]), /needs 4 bytes/);
    const notAgile = Buffer.from(good);
    notAgile.write('Spec ID Event02', 32, 'latin1');
    bad(notAgile, /only crypto-agile logs/);
    // an event claiming 3.18 GB of data (go-attestation's test case) fails on the bound, not on allocation
    const huge = new TpmWriter().bytes(good.subarray(0, HEADER_BYTES)).u32le(12).u32le(EV.EV_IPL).u32le(1).u16le(TPM_ALG.SHA256).bytes(Buffer.alloc(32)).u32le(3_183_000_000).finish();
    bad(huge, /eventSize at offset \d+: 3183000000 exceeds the bound/);
    const otherBank = new TpmWriter().bytes(good.subarray(0, HEADER_BYTES)).u32le(0).u32le(EV.EV_IPL).u32le(1).u16le(TPM_ALG.SHA1).finish();
    bad(otherBank, /is not a bank of the header/);
    assert.throws(() => parseBinaryEventLog(good, { maxEvents: 3 }), (e) => isTrustlaunchError(e, 'EVENT_LOG_MALFORMED'));
  });

  void it('random and mutated bytes give EVENT_LOG_MALFORMED or a log, nothing else', () => {
    const good = serializeBinaryEventLog(sampleBoot());
    const outcome = (bytes: Uint8Array): void => {
      try {
        parseBinaryEventLog(bytes);
      } catch (e) {
        if (!isTrustlaunchError(e, 'EVENT_LOG_MALFORMED')) throw e;
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), outcome), { numRuns: 300 });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (flips) => {
        const b = Buffer.from(good);
        for (const [at, v] of flips) b[at % b.length] = v;
        outcome(b);
      }),
      { numRuns: 500 },
    );
  });

  void it('a real firmware log (OVMF + swtpm, read by Linux) parses, replays to the PCRs the kernel read, and re-serialises byte for byte', () => {
    const dir = new URL('../fixtures/tpm/ovmf/', import.meta.url);
    const bytes = readFileSync(new URL('binary_bios_measurements', dir));
    const kernelPcrs = new Map(
      readFileSync(new URL('pcrs-sha256.txt', dir), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' ') as [string, string])
        .map(([i, v]) => [Number(i), v]),
    );
    const log = parseBinaryEventLog(bytes);
    assert.deepEqual(
      log.specId.digestSizes.map((d) => d.algorithmId),
      [TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512],
    );
    assert.deepEqual(serializeBinaryEventLog(log.events, log.specId), bytes, 'our serialiser rewrites the firmware log exactly');
    const replayed = replay(log.events);
    assert.equal(kernelPcrs.size, PCR_COUNT);
    // every PCR but 10, which Linux IMA extends from its own (separate) measurement list
    for (const [i, v] of kernelPcrs) if (i !== 10) assert.equal(replayed[i]?.toString('hex'), v, `PCR ${i}`);
    // the JSON form keeps the SHA-256 bank, and replays the same
    const viaJson = replay(eventsFromJson(JSON.parse(JSON.stringify(eventsToJson(log.events)))));
    assert.deepEqual(viaJson, replayed);
    // tpm2_eventlog agrees on every SHA-256 digest of the log
    const shas = runEventlogTool(bytes).digests;
    for (const e of log.events) assert.ok(shas.includes(e.digests.find((d) => d.hashAlg === TPM_ALG.SHA256)?.digest.toString('hex') ?? 'missing'));
    assert.ok(log.events.some((e) => e.eventType === EV.EV_EFI_BOOT_SERVICES_APPLICATION) && log.events.some((e) => e.eventType === EV.EV_SEPARATOR));
  });

  void it('rejects malformed JSON logs with EVENT_LOG_MALFORMED', () => {
    const json = eventsToJson(sampleBoot());
    for (const bad of [
      [{ ...json[0], pcrIndex: 24 }],
      [{ ...json[0], digests: [] }],
      [{ ...json[0], event: 'not base64url!' }],
      [{ ...json[0], extra: 1 }],
      'nope',
    ]) {
      assert.throws(() => eventsFromJson(bad), (e) => isTrustlaunchError(e, 'EVENT_LOG_MALFORMED'));
    }
  });
});
