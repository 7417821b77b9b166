// The kernel allowlist (DESIGN.md §5 "policy"): entries name an allowed kernel digest, and
// optionally pin the initramfs and command line too (a QEMU image is measured as the
// triple; an entry that pins it refuses a swapped initrd). Matching is a plain function.
import { z } from 'zod';
import type { ErrorCode } from '../../protocol/errors.js';
import { DigestSchema } from '../../protocol/messages.js';
import type { Digest } from '../../protocol/digest.js';

export const PolicyNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'expected 1..128 of A-Z a-z 0-9 . _ - (starting with a letter or digit)');

export const AllowlistEntrySchema = z.strictObject({
  name: PolicyNameSchema,
  kernel: DigestSchema,
  initrd: DigestSchema.optional(),
  cmdline: DigestSchema.optional(),
  createdAt: z.number().int(),
  /** Milliseconds since the epoch. */
  expiresAt: z.number().int().optional(),
  revokedAt: z.number().int().optional(),
});
export type AllowlistEntry = z.infer<typeof AllowlistEntrySchema>;

/** What a launch asserts about its image. */
export interface MeasuredImage {
  readonly kernel: Digest;
  readonly initrd?: Digest | undefined;
  readonly cmdline?: Digest | undefined;
}

export type AllowlistMatch =
  | { readonly ok: true; readonly entry: AllowlistEntry }
  | { readonly ok: false; readonly code: Extract<ErrorCode, 'KERNEL_NOT_ALLOWED' | 'KERNEL_EXPIRED' | 'KERNEL_REVOKED'>; readonly message: string };

/** An entry pins the kernel, and each of initrd / cmdline it names must equal the claim's. */
export function entryMatches(entry: AllowlistEntry, image: MeasuredImage): boolean {
  return entry.kernel === image.kernel && (entry.initrd === undefined || entry.initrd === image.initrd) && (entry.cmdline === undefined || entry.cmdline === image.cmdline);
}

/**
 * Judges an image against the allowlist at `now` (ms). A matching entry that is neither
 * revoked nor expired allows it; otherwise the most telling refusal: revoked, then expired
 * (a revoked entry stays revoked whatever its expiry), then not allowed at all.
 */
export function matchAllowlist(entries: readonly AllowlistEntry[], image: MeasuredImage, now: number): AllowlistMatch {
  const matching = entries.filter((e) => entryMatches(e, image));
  const valid = matching.find((e) => e.revokedAt === undefined && (e.expiresAt === undefined || now < e.expiresAt));
  if (valid !== undefined) return { ok: true, entry: valid };
  const revoked = matching.find((e) => e.revokedAt !== undefined);
  if (revoked !== undefined) return { ok: false, code: 'KERNEL_REVOKED', message: `allowlist entry ${revoked.name} for kernel ${image.kernel} was revoked` };
  const expired = matching[0];
  if (expired !== undefined) return { ok: false, code: 'KERNEL_EXPIRED', message: `allowlist entry ${expired.name} for kernel ${image.kernel} expired at ${new Date(expired.expiresAt ?? 0).toISOString()}` };
  const sameKernel = entries.find((e) => e.kernel === image.kernel);
  if (sameKernel !== undefined) {
    const which = sameKernel.initrd !== undefined && sameKernel.initrd !== image.initrd ? 'initrd' : 'cmdline';
    return { ok: false, code: 'KERNEL_NOT_ALLOWED', message: `kernel ${image.kernel} is allowlisted only with another ${which} (entry ${sameKernel.name})` };
  }
  return { ok: false, code: 'KERNEL_NOT_ALLOWED', message: `kernel ${image.kernel} is not on the allowlist` };
}
