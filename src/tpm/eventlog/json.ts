// The JSON form of an event log (EventLogJson in src/protocol/messages.ts): the SHA-256
// bank only, digests in hex, event data in base64url. Conversion both ways.
import { TrustlaunchError } from '../../protocol/errors.js';
import { fromBase64url, toBase64url } from '../../protocol/base64url.js';
import { EventLogSchema, describeIssues, type EventJson, type EventLogJson } from '../../protocol/messages.js';
import { TPM_ALG } from '../constants.js';
import { sha256Of, type TcgEvent } from './event.js';

/** Parses and validates untrusted JSON into events; EVENT_LOG_MALFORMED on any defect. */
export function eventsFromJson(json: unknown): TcgEvent[] {
  const parsed = EventLogSchema.safeParse(json);
  if (!parsed.success) throw new TrustlaunchError('EVENT_LOG_MALFORMED', describeIssues(parsed.error));
  return parsed.data.map((e, n) => {
    if (e.digests.length !== 1) throw new TrustlaunchError('EVENT_LOG_MALFORMED', `[${n}].digests: the SHA-256 bank must appear exactly once`);
    const d = e.digests[0] as EventJson['digests'][number];
    return {
      pcrIndex: e.pcrIndex,
      eventType: e.eventType,
      digests: [{ hashAlg: TPM_ALG.SHA256, digest: Buffer.from(d.digest, 'hex') }],
      event: fromBase64url(e.event, 'EVENT_LOG_MALFORMED'),
    };
  });
}

/** The JSON form; banks other than SHA-256 are dropped, an event without SHA-256 is an error. */
export function eventsToJson(events: readonly TcgEvent[]): EventLogJson {
  return events.map((e, n) => {
    const d = sha256Of(e);
    if (d === undefined) throw new TrustlaunchError('EVENT_LOG_MALFORMED', `event[${n}] has no SHA-256 digest`);
    return { pcrIndex: e.pcrIndex, eventType: e.eventType, digests: [{ alg: 'sha256' as const, digest: d.toString('hex') }], event: toBase64url(e.event) };
  });
}
