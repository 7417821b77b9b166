// The binary TCG PC Client event log (PC Client Platform Firmware Profile §10.2, little-
// endian): a TCG_PCR_EVENT header (SHA-1 format) whose event is the TCG_EfiSpecIDEvent
// "Spec ID Event03" (§10.4.5.1) naming the banks and digest sizes, then TCG_PCR_EVENT2
// entries. This is what /sys/kernel/security/tpm0/binary_bios_measurements holds.
import { TrustlaunchError } from '../../protocol/errors.js';
import { BOUNDS, TPM_ALG } from '../constants.js';
import { TpmReader } from '../marshal/reader.js';
import { TpmWriter } from '../marshal/writer.js';
import { EV } from './event-types.js';
import type { TcgEvent } from './event.js';

export const SPEC_ID_SIGNATURE = 'Spec ID Event03\0';

/** TCG_EfiSpecIDEvent (PC Client PFP §10.4.5.1). */
export interface SpecIdEvent {
  readonly platformClass: number;
  readonly specVersionMinor: number;
  readonly specVersionMajor: number;
  readonly specErrata: number;
  /** 1: UINTN is 32 bits, 2: 64 bits. */
  readonly uintnSize: number;
  readonly digestSizes: readonly { readonly algorithmId: number; readonly digestSize: number }[];
  readonly vendorInfo: Buffer;
}

export interface BinaryEventLog {
  readonly specId: SpecIdEvent;
  readonly events: readonly TcgEvent[];
}

/** The header trustlaunch writes: PC Client class, spec 2.0 errata 2, 64-bit UINTN, SHA-256 bank only. */
export const DEFAULT_SPEC_ID: SpecIdEvent = {
  platformClass: 0,
  specVersionMinor: 0,
  specVersionMajor: 2,
  specErrata: 2,
  uintnSize: 2,
  digestSizes: [{ algorithmId: TPM_ALG.SHA256, digestSize: 32 }],
  vendorInfo: Buffer.alloc(0),
};

export interface ParseLimits {
  /** Most events accepted (the loop bound). */
  readonly maxEvents?: number;
  /** Largest event data accepted (EFI variable events with certificate databases reach tens of KiB). */
  readonly maxEventSize?: number;
}

const SHA1_SIZE = 20;

function readSpecId(r: TpmReader): SpecIdEvent {
  const signature = Buffer.from(r.bytes(16, 'SpecID.signature')).toString('latin1');
  if (signature !== SPEC_ID_SIGNATURE) r.fail('SpecID.signature', 'not "Spec ID Event03": only crypto-agile logs are supported');
  const platformClass = r.u32le('SpecID.platformClass');
  const specVersionMinor = r.u8('SpecID.specVersionMinor');
  const specVersionMajor = r.u8('SpecID.specVersionMajor');
  const specErrata = r.u8('SpecID.specErrata');
  const uintnSize = r.u8('SpecID.uintnSize');
  const n = r.u32le('SpecID.numberOfAlgorithms');
  if (n === 0 || n > BOUNDS.HASH_COUNT) r.fail('SpecID.numberOfAlgorithms', `${n} outside 1..${BOUNDS.HASH_COUNT}`);
  const digestSizes: { algorithmId: number; digestSize: number }[] = [];
  for (let i = 0; i < n; i++) {
    const algorithmId = r.u16le(`SpecID.digestSizes[${i}].algorithmId`);
    const digestSize = r.u16le(`SpecID.digestSizes[${i}].digestSize`);
    if (digestSize === 0 || digestSize > BOUNDS.DIGEST) r.fail(`SpecID.digestSizes[${i}].digestSize`, `${digestSize} outside 1..${BOUNDS.DIGEST}`);
    if (digestSizes.some((d) => d.algorithmId === algorithmId)) r.fail(`SpecID.digestSizes[${i}]`, 'algorithm listed twice');
    digestSizes.push({ algorithmId, digestSize });
  }
  const vendorInfoSize = r.u8('SpecID.vendorInfoSize');
  const vendorInfo = Buffer.from(r.bytes(vendorInfoSize, 'SpecID.vendorInfo'));
  r.end();
  return { platformClass, specVersionMinor, specVersionMajor, specErrata, uintnSize, digestSizes, vendorInfo };
}

function readEvent2(r: TpmReader, specId: SpecIdEvent, maxEventSize: number, n: number): TcgEvent {
  const f = `event[${n}]`;
  const pcrIndex = r.u32le(`${f}.pcrIndex`);
  const eventType = r.u32le(`${f}.eventType`);
  const count = r.u32le(`${f}.digests.count`);
  if (count > specId.digestSizes.length) r.fail(`${f}.digests.count`, `${count} exceeds the ${specId.digestSizes.length} banks of the header`);
  const digests: { hashAlg: number; digest: Buffer }[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16le(`${f}.digests[${i}].hashAlg`);
    const size = specId.digestSizes.find((d) => d.algorithmId === hashAlg)?.digestSize;
    if (size === undefined) r.fail(`${f}.digests[${i}].hashAlg`, `0x${hashAlg.toString(16)} is not a bank of the header`);
    if (digests.some((d) => d.hashAlg === hashAlg)) r.fail(`${f}.digests[${i}]`, 'bank recorded twice');
    digests.push({ hashAlg, digest: Buffer.from(r.bytes(size, `${f}.digests[${i}].digest`)) });
  }
  const eventSize = r.u32le(`${f}.eventSize`);
  if (eventSize > maxEventSize) r.fail(`${f}.eventSize`, `${eventSize} exceeds the bound ${maxEventSize}`);
  return { pcrIndex, eventType, digests, event: Buffer.from(r.bytes(eventSize, `${f}.event`)) };
}

/** Parses a binary crypto-agile event log; every failure is EVENT_LOG_MALFORMED. */
export function parseBinaryEventLog(bytes: Uint8Array, limits: ParseLimits = {}): BinaryEventLog {
  const maxEvents = limits.maxEvents ?? 4096;
  const maxEventSize = limits.maxEventSize ?? 1 << 20;
  const r = new TpmReader(bytes, { code: 'EVENT_LOG_MALFORMED', what: 'TCG event log' });
  // TCG_PCR_EVENT (§10.2.1): the header in the SHA-1 log format.
  const pcrIndex = r.u32le('header.pcrIndex');
  const eventType = r.u32le('header.eventType');
  const digest = r.bytes(SHA1_SIZE, 'header.digest');
  if (pcrIndex !== 0 || eventType !== EV.EV_NO_ACTION || digest.some((b) => b !== 0)) {
    r.fail('header', 'the first event is not the EV_NO_ACTION Spec ID event of a crypto-agile log');
  }
  const headerSize = r.u32le('header.eventSize');
  if (headerSize > 16 + 4 + 4 + 4 + BOUNDS.HASH_COUNT * 4 + 1 + 255) r.fail('header.eventSize', `${headerSize} is too large for a Spec ID event`);
  const specId = readSpecId(r.sub(headerSize, 'header.event', 'TCG_EfiSpecIDEvent'));
  const events: TcgEvent[] = [];
  while (r.remaining > 0) {
    if (events.length >= maxEvents) r.fail('events', `more than ${maxEvents} events`);
    events.push(readEvent2(r, specId, maxEventSize, events.length));
  }
  return { specId, events };
}

function writeSpecId(w: TpmWriter, s: SpecIdEvent): void {
  w.bytes(Buffer.from(SPEC_ID_SIGNATURE, 'latin1'))
    .u32le(s.platformClass)
    .u8(s.specVersionMinor)
    .u8(s.specVersionMajor)
    .u8(s.specErrata)
    .u8(s.uintnSize)
    .u32le(s.digestSizes.length);
  for (const d of s.digestSizes) w.u16le(d.algorithmId).u16le(d.digestSize);
  w.u8(s.vendorInfo.length).bytes(s.vendorInfo);
}

/** Writes the binary form; every event must record exactly the header's banks, in its order. */
export function serializeBinaryEventLog(events: readonly TcgEvent[], specId: SpecIdEvent = DEFAULT_SPEC_ID): Buffer {
  const header = new TpmWriter(64);
  writeSpecId(header, specId);
  const headerBytes = header.finish();
  const w = new TpmWriter(1024);
  w.u32le(0).u32le(EV.EV_NO_ACTION).bytes(Buffer.alloc(SHA1_SIZE)).u32le(headerBytes.length).bytes(headerBytes);
  events.forEach((e, n) => {
    w.u32le(e.pcrIndex).u32le(e.eventType).u32le(e.digests.length);
    for (const d of e.digests) {
      const size = specId.digestSizes.find((s) => s.algorithmId === d.hashAlg)?.digestSize;
      if (size !== d.digest.length) {
        throw new TrustlaunchError('EVENT_LOG_MALFORMED', `event[${n}]: digest for 0x${d.hashAlg.toString(16)} does not fit the header's banks`);
      }
      w.u16le(d.hashAlg).bytes(d.digest);
    }
    w.u32le(e.event.length).bytes(e.event);
  });
  return w.finish();
}
