// Measured boot and the launch gate's measurements (DESIGN.md §3.1): each measurement is
// one PCR extend on the device and one event in the hypervisor's log, in the TCG
// crypto-agile shape (PC Client PFP §10.2.2), appended in the same device turn so the log
// always replays to the PCRs. The hypervisor owns the log; domains get copies.
// After a device power cycle (PCRs back to zero) `remeasure` extends the logged digests
// again, in order, so attestation works again without changing what the log says.
import { TrustlaunchError } from '../../protocol/errors.js';
import { PCR, PLATFORM_PCRS } from '../../protocol/pcrs.js';
import { digestBytes, type Digest } from '../../protocol/digest.js';
import { canonicalBytes } from '../../protocol/canonical-json.js';
import { EV } from '../../tpm/eventlog/event-types.js';
import { sha256Event, sha256Of, type TcgEvent } from '../../tpm/eventlog/event.js';
import { replay } from '../../tpm/eventlog/replay.js';
import { PCR_DIGEST_SIZE } from '../../tpm/pcr-bank.js';
import type { DeviceSlot, PcrHolder } from './device-slot.js';

/** A component the boot chain measured before the hypervisor ran: what it is and its digest. */
export interface PlatformMeasurement {
  /** Human-readable description, recorded as the event data. */
  readonly description: string;
  readonly digest: Digest;
}

export type RemeasureOutcome =
  /** The PCRs already replay from the log: nothing to do. */
  | 'in-step'
  /** The PCRs were reset; every logged digest was extended again. */
  | 'replayed'
  /** The PCRs hold values neither reset nor logged: left alone, attestation will fail. */
  | 'unexpected';

/** Event log entries are bounded by the wire schema (EventLogSchema: 1024 events). */
export const MAX_EVENTS = 1024;
const MAX_DESCRIPTION = 256;

function copyEvent(e: TcgEvent): TcgEvent {
  return { pcrIndex: e.pcrIndex, eventType: e.eventType, digests: e.digests.map((d) => ({ hashAlg: d.hashAlg, digest: Buffer.from(d.digest) })), event: Buffer.from(e.event) };
}

export class MeasuredBoot {
  readonly #slot: DeviceSlot<PcrHolder>;
  readonly #events: TcgEvent[] = [];

  constructor(slot: DeviceSlot<PcrHolder>) {
    this.#slot = slot;
  }

  /**
   * The hypervisor's boot: platform firmware into PCR 0 (EV_S_CRTM_CONTENTS), the
   * hypervisor image into PCR 4 (EV_IPL), the canonical boot configuration into PCR 5
   * (EV_ACTION; the event data is the configuration itself, so a verifier reads the
   * launch policy out of the log it has just replayed).
   */
  async measureBoot(firmware: PlatformMeasurement, hypervisor: PlatformMeasurement, bootConfig: Uint8Array): Promise<void> {
    await this.#measure(PCR.PLATFORM_FIRMWARE, EV.EV_S_CRTM_CONTENTS, describe(firmware.description), digestBytes(firmware.digest));
    await this.#measure(PCR.HYPERVISOR, EV.EV_IPL, describe(hypervisor.description), digestBytes(hypervisor.digest));
    await this.#measure(PCR.BOOT_CONFIG, EV.EV_ACTION, bootConfig);
  }

  /** The launch gate's measurement of a mini-domain image that passed (PCR 12, EV_IPL). */
  async measureMiniDomain(digest: Digest, launch: number): Promise<TcgEvent> {
    return this.#measure(PCR.MINIDOMAIN, EV.EV_IPL, canonicalBytes({ event: 'trustlaunch-minidomain-launch', digest, launch }), digestBytes(digest));
  }

  /** A copy of the log, oldest first. */
  events(): TcgEvent[] {
    return this.#events.map(copyEvent);
  }

  get length(): number {
    return this.#events.length;
  }

  /**
   * Brings the device's PCRs back in step with the log after a power cycle. Runs as one
   * device turn: read, compare with the log's replay, and if the PCRs are all at their
   * reset value extend every logged digest again.
   */
  remeasure(): Promise<RemeasureOutcome> {
    return this.#slot.run(async (device) => {
      const indices = [...new Set([...PLATFORM_PCRS, ...this.#events.map((e) => e.pcrIndex)])].sort((a, b) => a - b);
      const expected = replay(this.#events);
      const now = await device.pcrRead(indices);
      const equal = (i: number, value: Uint8Array): boolean => Buffer.from(now.get(i) ?? []).equals(value);
      if (indices.every((i) => equal(i, expected[i] as Buffer))) return 'in-step';
      if (!indices.every((i) => equal(i, Buffer.alloc(PCR_DIGEST_SIZE)))) return 'unexpected';
      for (const e of this.#events) await device.pcrExtend(e.pcrIndex, sha256Of(e) as Buffer);
      return 'replayed';
    });
  }

  #measure(pcr: number, eventType: number, data: Uint8Array, digest?: Uint8Array): Promise<TcgEvent> {
    return this.#slot.run(async (device) => {
      if (this.#events.length >= MAX_EVENTS) throw new TrustlaunchError('CAPACITY_EXCEEDED', `the event log is full (${MAX_EVENTS} events)`);
      const event = sha256Event(pcr, eventType, data, digest);
      await device.pcrExtend(pcr, sha256Of(event) as Buffer);
      this.#events.push(event);
      return copyEvent(event);
    });
  }
}

function describe(text: string): Buffer {
  if (text.length === 0 || text.length > MAX_DESCRIPTION) throw new RangeError(`a measurement description has 1..${MAX_DESCRIPTION} characters`);
  return Buffer.from(text, 'utf8');
}
