// QEMU image bundles (issue 7): a kernel, optionally an initramfs and a command line, each
// stored as its own content-addressed blob, tied together by a manifest — the canonical
// JSON (RFC 8785) `{"cmdline":"sha256:…","initrd":"sha256:…","kernel":"sha256:…"}`, the
// same shape scripts/build-guest.sh writes to manifest.json. The manifest is a blob too,
// and its digest is the image's digest. The cmdline blob holds the exact command-line
// bytes (UTF-8, no trailing newline): its digest is the one LaunchClaims.cmdline names.
import { z } from 'zod';
import { canonicalize } from '../../protocol/canonical-json.js';
import { sha256Digest, type Digest } from '../../protocol/digest.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { DigestSchema, describeIssues } from '../../protocol/messages.js';

export const BundleManifestSchema = z.strictObject({
  kernel: DigestSchema,
  initrd: DigestSchema.optional(),
  cmdline: DigestSchema.optional(),
});
export type BundleManifest = z.infer<typeof BundleManifestSchema>;

/** A manifest is three digests; anything much larger is not one. */
export const MAX_MANIFEST_BYTES = 1024;
/** Linux's COMMAND_LINE_SIZE on x86 is 2048; leave room for other architectures. */
export const MAX_CMDLINE_BYTES = 4096;

export function encodeManifest(manifest: BundleManifest): Buffer {
  return Buffer.from(canonicalize(manifest), 'utf8');
}

export function manifestDigest(manifest: BundleManifest): Digest {
  return sha256Digest(encodeManifest(manifest));
}

/** Parses manifest bytes; only the canonical encoding is accepted, so one bundle has one digest. */
export function parseManifest(bytes: Uint8Array): BundleManifest {
  if (bytes.length > MAX_MANIFEST_BYTES) throw new TrustlaunchError('MALFORMED_REQUEST', `a bundle manifest is at most ${MAX_MANIFEST_BYTES} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'the bundle manifest is not JSON', { cause: e });
  }
  const result = BundleManifestSchema.safeParse(json);
  if (!result.success) throw new TrustlaunchError('MALFORMED_REQUEST', `bundle manifest: ${describeIssues(result.error)}`);
  if (!encodeManifest(result.data).equals(bytes)) throw new TrustlaunchError('MALFORMED_REQUEST', 'the bundle manifest is not canonical JSON (RFC 8785)');
  return result.data;
}

/** The blobs of a bundle by role, manifest first. */
export function bundleParts(manifest: BundleManifest, digest: Digest): Array<{ role: 'manifest' | 'kernel' | 'initrd' | 'cmdline'; digest: Digest }> {
  const parts: Array<{ role: 'manifest' | 'kernel' | 'initrd' | 'cmdline'; digest: Digest }> = [
    { role: 'manifest', digest },
    { role: 'kernel', digest: manifest.kernel },
  ];
  if (manifest.initrd !== undefined) parts.push({ role: 'initrd', digest: manifest.initrd });
  if (manifest.cmdline !== undefined) parts.push({ role: 'cmdline', digest: manifest.cmdline });
  return parts;
}
