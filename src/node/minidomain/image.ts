// The mini-domain image: the attestation agent's own code, as one deterministic archive
// (canonical JSON of its source files, sorted by path). `trustlaunch node init` writes it
// to the node's disk and freezes its SHA-256 into the boot configuration; at every boot
// dom0 reads that file and hands it to the launch gate, so changing one byte of it is
// caught by the gate (G2). The loader (entry.ts) then checks that the measured archive is
// the agent code this process loaded, so what runs is what was measured.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { canonicalBytes } from '../../protocol/canonical-json.js';
import { sha256Digest, type Digest } from '../../protocol/digest.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { base64urlSchema, describeIssues } from '../../protocol/messages.js';
import { fromBase64url, toBase64url } from '../../protocol/base64url.js';

export const IMAGE_FORMAT = 'trustlaunch-minidomain/1';
/** Upper bounds of an archive: far above the agent's size, far below anything harmful. */
export const MAX_IMAGE_BYTES = 8 * 1024 * 1024;
const MAX_FILES = 256;
const MAX_FILE_BYTES = 512 * 1024;

const ImageSchema = z.strictObject({
  format: z.literal(IMAGE_FORMAT),
  files: z
    .array(
      z.strictObject({
        path: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}(?:\/[a-z0-9][a-z0-9._-]{0,63}){0,4}$/, 'a relative path of lowercase names'),
        data: base64urlSchema(MAX_FILE_BYTES),
      }),
    )
    .min(1)
    .max(MAX_FILES),
});

export interface AgentFile {
  readonly path: string;
  readonly data: Buffer;
}

/** The directory of the agent's code (this module's directory). */
export const AGENT_DIR = fileURLToPath(new URL('.', import.meta.url));

/** Every .ts / .js source file under `dir`, sorted by path (relative, '/'-separated). */
export function readAgentSources(dir: string = AGENT_DIR): AgentFile[] {
  const out: AgentFile[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 4) return;
    for (const name of readdirSync(d).sort()) {
      const full = join(d, name);
      const st = statSync(full);
      if (st.isDirectory()) walk(full, depth + 1);
      else if (st.isFile() && /\.(?:ts|js)$/.test(name) && !name.endsWith('.d.ts')) out.push({ path: relative(dir, full).split(sep).join('/'), data: readFileSync(full) });
    }
  };
  walk(dir, 0);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The archive bytes of a set of files (deterministic: same files, same bytes). */
export function packImage(files: readonly AgentFile[]): Buffer {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return canonicalBytes({ format: IMAGE_FORMAT, files: sorted.map((f) => ({ path: f.path, data: toBase64url(f.data) })) });
}

/** Parses an archive (untrusted bytes: bounded, strict, no duplicate or unsorted paths). */
export function unpackImage(bytes: Uint8Array): AgentFile[] {
  if (bytes.length > MAX_IMAGE_BYTES) throw new TrustlaunchError('MINIDOMAIN_IMAGE_INVALID', `a mini-domain image has at most ${MAX_IMAGE_BYTES} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new TrustlaunchError('MINIDOMAIN_IMAGE_INVALID', 'the mini-domain image is not UTF-8 JSON');
  }
  const parsed = ImageSchema.safeParse(json);
  if (!parsed.success) throw new TrustlaunchError('MINIDOMAIN_IMAGE_INVALID', `mini-domain image: ${describeIssues(parsed.error)}`);
  const files = parsed.data.files.map((f) => ({ path: f.path, data: fromBase64url(f.data, 'MINIDOMAIN_IMAGE_INVALID') }));
  // Canonical form only: one archive per set of files, so the digest names the code.
  if (!packImage(files).equals(bytes)) throw new TrustlaunchError('MINIDOMAIN_IMAGE_INVALID', 'the mini-domain image is not in canonical form');
  return files;
}

/** The archive of the agent code installed with this build, captured when this module was loaded. */
const INSTALLED = packImage(readAgentSources());

/** The mini-domain image of this installation (what `node init` writes to the node's disk). */
export function installedImage(): Buffer {
  return Buffer.from(INSTALLED);
}

export function installedImageDigest(): Digest {
  return sha256Digest(INSTALLED);
}

/**
 * The loader's check: the measured image must be a canonical archive and exactly the
 * agent code this process runs. MINIDOMAIN_IMAGE_INVALID otherwise (the domain does not start).
 */
export function checkMeasuredImage(measured: Uint8Array): void {
  unpackImage(measured);
  if (!INSTALLED.equals(measured)) {
    throw new TrustlaunchError('MINIDOMAIN_IMAGE_INVALID', `the measured image (${sha256Digest(measured)}) is not the agent code this node runs (${sha256Digest(INSTALLED)})`);
  }
}
