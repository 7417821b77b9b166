// The measurements of a launch: the event log converted to TcgEvents and replayed (the
// `eventLog` step), then matched to the platform reference values (the `platform` step).
// A node sends the same event log with every launch until it boots again, so a judge
// thread remembers the replay of each log it has seen (MeasurementCache) and, for the
// policy snapshot in force, the platform match; replaying costs several SHA-256 extends
// and buffers per event and matching as much again, for an answer that is the same every
// time. What is never remembered: the comparison of this quote's PCR values with the
// replay, which runs for every evidence.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { EventLogJson } from '../../protocol/messages.js';
import { TPM_ALG } from '../../tpm/constants.js';
import type { TcgEvent } from '../../tpm/eventlog/event.js';
import { checkReplay, replay } from '../../tpm/eventlog/replay.js';
import type { PlatformMatch, PlatformReference } from '../policy/platform.js';

/** An event log and the PCR values it replays to. */
export interface ReplayedLog {
  readonly events: readonly TcgEvent[];
  /** SHA-256 bank, PCRs 0..23, as replay() gives them. */
  readonly values: readonly Buffer[];
}

/**
 * The schema step has validated the log (EventLogSchema); this only converts it, with
 * eventsFromJson's one extra rule: exactly one SHA-256 digest per event.
 */
export function toTcgEvents(log: EventLogJson): TcgEvent[] {
  return log.map((e, n) => {
    const d = e.digests[0];
    if (e.digests.length !== 1 || d === undefined) throw new TrustlaunchError('EVENT_LOG_MALFORMED', `[${n}].digests: the SHA-256 bank must appear exactly once`);
    return { pcrIndex: e.pcrIndex, eventType: e.eventType, digests: [{ hashAlg: TPM_ALG.SHA256, digest: Buffer.from(d.digest, 'hex') }], event: Buffer.from(e.event, 'base64url') };
  });
}

/** Converts and replays a log: EVENT_LOG_MALFORMED for one that cannot be replayed. */
export function replayLog(log: EventLogJson): ReplayedLog {
  const events = toTcgEvents(log);
  return { events, values: replay(events) };
}

/**
 * Throws EVENT_LOG_REPLAY_MISMATCH (checkReplay's error, naming the first PCR that differs)
 * unless every quoted value is the replayed one.
 */
export function checkQuotedValues(log: ReplayedLog, quoted: ReadonlyMap<number, Uint8Array>): void {
  for (const [i, value] of quoted) {
    const r = log.values[i];
    if (r === undefined || !r.equals(value)) {
      checkReplay(log.events, quoted);
      throw new Error('checkReplay accepted values that differ from the replay'); // a bug, never input
    }
  }
}

/** Logs remembered per judge thread; a longer log is replayed every time instead. */
const MAX_ENTRIES = 256;
const MAX_KEY_CHARS = 64 * 1024;

interface Entry extends ReplayedLog {
  /** The platform match for one list of references (a policy snapshot's, by identity). */
  platform?: { readonly references: readonly PlatformReference[]; readonly match: PlatformMatch };
}

/**
 * What identifies a schema-valid log to the replay: each event's PCR index, type, digest
 * count, first digest (hex) and data (base64url), separated by characters neither hex nor
 * base64url contain — so different logs have different keys — and ~15× cheaper than
 * JSON.stringify. (Only logs with one digest per event are kept, all of which is in the
 * key; String(-0) is "0", and a PCR index or event type of -0 is 0 to replay and matching.)
 */
function logKey(log: EventLogJson): string {
  let key = '';
  for (const e of log) key += `${e.pcrIndex} ${e.eventType} ${e.digests.length} ${e.digests[0]?.digest ?? ''} ${e.event};`;
  return key;
}

export class MeasurementCache {
  readonly #entries = new Map<string, Entry>();

  /** replayLog(log), remembered. Only logs that replay are kept: a malformed one fails the same way every time. */
  replay(log: EventLogJson): ReplayedLog {
    const key = logKey(log);
    const hit = this.#entries.get(key);
    if (hit !== undefined) return hit;
    const fresh: Entry = replayLog(log);
    if (key.length <= MAX_KEY_CHARS) {
      if (this.#entries.size >= MAX_ENTRIES) this.#entries.delete(this.#entries.keys().next().value as string);
      this.#entries.set(key, fresh);
    }
    return fresh;
  }

  /**
   * The platform match of a replayed log against `references`, remembered for that list.
   * Called only once the quoted values equal the replay (checkQuotedValues) and the quote
   * covers exactly the platform PCRs — the only PCRs a reference may pin — so the match
   * depends on the log and the references alone.
   */
  platform(log: ReplayedLog, references: readonly PlatformReference[], match: () => PlatformMatch): PlatformMatch {
    const entry = log as Entry;
    if (entry.platform?.references === references) return entry.platform.match;
    const result = match();
    entry.platform = { references, match: result };
    return result;
  }
}
