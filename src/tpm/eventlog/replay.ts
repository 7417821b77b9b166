// Replaying a log (PC Client PFP §10.2): start every SHA-256 PCR at its value after
// TPM2_Startup (zero; all ones for the DRTM PCRs 17–22; PCR 0 at the locality of a
// StartupLocality EV_NO_ACTION event, §10.4.5.3), extend each event's
// SHA-256 digest in order, never extend EV_NO_ACTION. The result is what the TPM's PCRs
// must hold if the log is honest.
import { TrustlaunchError } from '../../protocol/errors.js';
import { PCR_COUNT } from '../../protocol/pcrs.js';
import { extendValue, pcrInitialValue, PCR_DIGEST_SIZE } from '../pcr-bank.js';
import { EV } from './event-types.js';
import { sha256Of, type TcgEvent } from './event.js';

const STARTUP_LOCALITY = Buffer.from('StartupLocality\0', 'latin1');

/** The locality of a StartupLocality event, or undefined for any other event. */
function startupLocality(e: TcgEvent): number | undefined {
  if (e.eventType !== EV.EV_NO_ACTION || e.event.length !== STARTUP_LOCALITY.length + 1) return undefined;
  return e.event.subarray(0, STARTUP_LOCALITY.length).equals(STARTUP_LOCALITY) ? e.event[STARTUP_LOCALITY.length] : undefined;
}

/** PCR values (SHA-256 bank, all PCR_COUNT registers) after the events; EVENT_LOG_MALFORMED for an unreplayable log. */
export function replay(events: readonly TcgEvent[]): Buffer[] {
  const pcrs: Buffer[] = Array.from({ length: PCR_COUNT }, (_, i) => pcrInitialValue(i));
  const extended = new Set<number>();
  events.forEach((e, n) => {
    const locality = startupLocality(e);
    if (locality !== undefined) {
      if (extended.has(0)) throw new TrustlaunchError('EVENT_LOG_MALFORMED', `event[${n}]: StartupLocality after PCR 0 was extended`);
      const initial = Buffer.alloc(PCR_DIGEST_SIZE);
      initial[PCR_DIGEST_SIZE - 1] = locality;
      pcrs[0] = initial;
      return;
    }
    if (e.eventType === EV.EV_NO_ACTION) return;
    if (!Number.isInteger(e.pcrIndex) || e.pcrIndex < 0 || e.pcrIndex >= PCR_COUNT) {
      throw new TrustlaunchError('EVENT_LOG_MALFORMED', `event[${n}]: PCR ${e.pcrIndex} outside 0..${PCR_COUNT - 1}`);
    }
    const d = sha256Of(e);
    if (d === undefined || d.length !== PCR_DIGEST_SIZE) throw new TrustlaunchError('EVENT_LOG_MALFORMED', `event[${n}] has no SHA-256 digest`);
    pcrs[e.pcrIndex] = extendValue(pcrs[e.pcrIndex] as Buffer, d);
    extended.add(e.pcrIndex);
  });
  return pcrs;
}

/** Throws EVENT_LOG_REPLAY_MISMATCH unless replaying `events` gives every value in `quoted`. */
export function checkReplay(events: readonly TcgEvent[], quoted: ReadonlyMap<number, Uint8Array>): void {
  const replayed = replay(events);
  for (const [i, value] of quoted) {
    const r = replayed[i];
    if (r === undefined || !r.equals(value)) {
      throw new TrustlaunchError('EVENT_LOG_REPLAY_MISMATCH', `PCR ${i}: the event log replays to ${r?.toString('hex') ?? 'nothing'}, the quote says ${Buffer.from(value).toString('hex')}`, {
        detail: { pcr: i },
      });
    }
  }
}
