// A PCR bank with its event log, kept in step: every measurement is one extend and one
// event (what measured boot and the launch gate do). The log replays to the bank by
// construction, which the tests check against replay().
import type { PcrBankLike } from '../pcr-bank.js';
import { sha256Event, type TcgEvent } from './event.js';
import { eventsToJson } from './json.js';
import type { EventLogJson } from '../../protocol/messages.js';

export class MeasurementLog {
  readonly #bank: PcrBankLike;
  readonly #events: TcgEvent[] = [];

  constructor(bank: PcrBankLike) {
    this.#bank = bank;
  }

  /** Extends PCR `pcrIndex` with `digest` (default SHA-256 of `event`) and records the event. */
  measure(pcrIndex: number, eventType: number, event: Uint8Array, digest?: Uint8Array): TcgEvent {
    const e = sha256Event(pcrIndex, eventType, event, digest);
    this.#bank.extend(pcrIndex, e.digests[0]?.digest ?? Buffer.alloc(0));
    this.#events.push(e);
    return e;
  }

  get events(): readonly TcgEvent[] {
    return this.#events;
  }

  toJson(): EventLogJson {
    return eventsToJson(this.#events);
  }
}
