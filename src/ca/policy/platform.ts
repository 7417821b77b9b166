// Platform reference values (DESIGN.md §4.1 step 4, §4.2 step 7): what a trusted node's
// measured boot looks like. A plain function judges an already-replayed event log.
// PCR roles come from src/protocol/pcrs.ts: 0 firmware, 4 hypervisor, 5 boot
// configuration, 12 mini-domain launches (one event per launch through the gate).
import { z } from 'zod';
import { DigestSchema } from '../../protocol/messages.js';
import { PCR, PLATFORM_PCRS } from '../../protocol/pcrs.js';
import { EV } from '../../tpm/eventlog/event-types.js';
import { sha256Of, type TcgEvent } from '../../tpm/eventlog/event.js';
import { PolicyNameSchema } from './allowlist.js';

const QuotedPcrKeySchema = z.enum(PLATFORM_PCRS.map(String) as [string, ...string[]]);

export const PlatformReferenceSchema = z.strictObject({
  name: PolicyNameSchema,
  /** SHA-256 of the hypervisor image: every PCR 4 event (at least one). */
  hypervisor: DigestSchema,
  /** SHA-256 of the mini-domain image: every PCR 12 event (at least one). */
  minidomain: DigestSchema,
  /** When given: every PCR 0 event (at least one). */
  firmware: DigestSchema.optional(),
  /** When given: every PCR 5 event (at least one) — the node's boot configuration. */
  bootConfig: DigestSchema.optional(),
  /** When given: exact quoted values of these platform PCRs. */
  pcrs: z.partialRecord(QuotedPcrKeySchema, z.string().regex(/^[0-9a-f]{64}$/)).optional(),
  createdAt: z.number().int(),
});
export type PlatformReference = z.infer<typeof PlatformReferenceSchema>;

export type PlatformMatch = { readonly ok: true; readonly reference: PlatformReference } | { readonly ok: false; readonly message: string };

/** The SHA-256 digests of the measuring events of one PCR (EV_NO_ACTION events extend nothing). */
function digestsOf(events: readonly TcgEvent[], pcr: number): string[] {
  return events.filter((e) => e.pcrIndex === pcr && e.eventType !== EV.EV_NO_ACTION).map((e) => `sha256:${sha256Of(e)?.toString('hex') ?? ''}`);
}

/** Why `ref` does not describe the platform, or undefined when it does. */
function mismatch(ref: PlatformReference, events: readonly TcgEvent[], quoted: ReadonlyMap<number, Uint8Array>): string | undefined {
  const every = (what: string, pcr: number, expected: string): string | undefined => {
    const ds = digestsOf(events, pcr);
    if (ds.length === 0) return `no ${what} measurement in PCR ${pcr}`;
    const other = ds.find((d) => d !== expected);
    return other === undefined ? undefined : `${what} measured ${other}, expected ${expected}`;
  };
  const checks: Array<() => string | undefined> = [
    () => every('hypervisor', PCR.HYPERVISOR, ref.hypervisor),
    () => every('mini-domain', PCR.MINIDOMAIN, ref.minidomain),
    () => (ref.firmware === undefined ? undefined : every('firmware', PCR.PLATFORM_FIRMWARE, ref.firmware)),
    () => (ref.bootConfig === undefined ? undefined : every('boot configuration', PCR.BOOT_CONFIG, ref.bootConfig)),
    () => {
      for (const [index, hex] of Object.entries(ref.pcrs ?? {})) {
        const value = quoted.get(Number(index));
        if (value === undefined || Buffer.from(value).toString('hex') !== hex) return `PCR ${index} is ${value === undefined ? 'not quoted' : Buffer.from(value).toString('hex')}, expected ${hex}`;
      }
      return undefined;
    },
  ];
  for (const check of checks) {
    const why = check();
    if (why !== undefined) return why;
  }
  return undefined;
}

/**
 * Matches a replayed event log (its events and the quoted PCR values they replay to)
 * against the reference values; the first reference that fits wins (in the order given).
 */
export function matchPlatform(references: readonly PlatformReference[], events: readonly TcgEvent[], quoted: ReadonlyMap<number, Uint8Array>): PlatformMatch {
  if (references.length === 0) return { ok: false, message: 'the CA has no platform reference values (add one with `trustlaunch ca platform add`)' };
  const reasons: string[] = [];
  for (const ref of references) {
    const why = mismatch(ref, events, quoted);
    if (why === undefined) return { ok: true, reference: ref };
    reasons.push(`${ref.name}: ${why}`);
  }
  const shown = reasons.slice(0, 3).join('; ');
  return { ok: false, message: `no platform reference matches (${shown}${reasons.length > 3 ? `; and ${reasons.length - 3} more` : ''})`.slice(0, 500) };
}
