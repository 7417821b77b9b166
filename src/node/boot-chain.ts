// What the boot chain measures before the hypervisor runs (DESIGN.md §3.1 "platform boot
// measures firmware and hypervisor"): in this model the firmware is a fixed description,
// and the hypervisor image is the trusted code as installed — the hypervisor's own
// modules and the libraries it runs on (protocol, TPM) — hashed file by file into one
// manifest digest. A node whose hypervisor code differs measures differently, and a CA
// holding the old reference values refuses it.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalBytes } from '../protocol/canonical-json.js';
import { sha256Digest, type Digest } from '../protocol/digest.js';
import type { PlatformMeasurement } from './hypervisor/index.js';

export const FIRMWARE: PlatformMeasurement = Object.freeze({
  description: 'trustlaunch model platform firmware 1.0',
  digest: sha256Digest('trustlaunch model platform firmware 1.0'),
});

/** src/ (or dist/) of this installation. */
const SOURCE_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The hypervisor image: these directories of the installation. */
const HYPERVISOR_PARTS = ['node/hypervisor', 'protocol', 'tpm'] as const;

function files(dir: string, depth = 0): string[] {
  if (depth > 6) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    const st = statSync(full);
    if (st.isDirectory()) out.push(...files(full, depth + 1));
    else if (st.isFile() && /\.(?:ts|js)$/.test(name)) out.push(full);
  }
  return out;
}

/** The hypervisor image's measurement: SHA-256 of a canonical manifest {path: sha256} of its files. */
export function hypervisorMeasurement(root: string = SOURCE_ROOT): PlatformMeasurement {
  const manifest: Record<string, Digest> = {};
  for (const part of HYPERVISOR_PARTS) {
    for (const f of files(join(root, part))) manifest[relative(root, f).split(sep).join('/')] = sha256Digest(readFileSync(f));
  }
  return Object.freeze({ description: `trustlaunch hypervisor (${Object.keys(manifest).length} files)`, digest: sha256Digest(canonicalBytes(manifest)) });
}

/** The four digests a CA's platform reference values name (`trustlaunch ca platform add`). */
export interface NodeMeasurements {
  readonly firmware: Digest;
  readonly hypervisor: Digest;
  readonly bootConfig: Digest;
  readonly minidomain: Digest;
}
