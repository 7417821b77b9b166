// Streaming SHA-256 of a 256 MiB file (sha256File) vs `openssl dgst -sha256` on the same
// file, same run. Goal: ≥ 0.9 of openssl's throughput; peak memory independent of size.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { sha256File } from '../src/protocol/digest.js';
import type { BenchContext } from './lib/report.js';

const MiB = 1 << 20;

function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, 'w', 0o600);
  const block = Buffer.alloc(4 * MiB);
  try {
    for (let written = 0; written < size; written += block.length) {
      randomFillSync(block);
      writeSync(fd, block, 0, Math.min(block.length, size - written));
    }
  } finally {
    closeSync(fd);
  }
}

async function throughput(path: string, size: number): Promise<{ ours: number; openssl: number; digest: string }> {
  const t0 = process.hrtime.bigint();
  const { digest } = await sha256File(path);
  const t1 = process.hrtime.bigint();
  const out = execFileSync('openssl', ['dgst', '-sha256', '-r', path], { encoding: 'utf8' });
  const t2 = process.hrtime.bigint();
  if (`sha256:${out.split(' ')[0]}` !== digest) throw new Error('digest disagrees with openssl');
  const mibps = (ns: bigint): number => size / MiB / (Number(ns) / 1e9);
  return { ours: mibps(t1 - t0), openssl: mibps(t2 - t1), digest };
}

export async function run(ctx: BenchContext): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tl-bench-hash-'));
  try {
    const sizes = [64 * MiB, 256 * MiB];
    const peak: number[] = [];
    for (const size of sizes) {
      const path = join(dir, `blob-${size}`);
      writeRandomFile(path, size);
      // warm the page cache for both readers, then take the best of three rounds each
      await throughput(path, size);
      let best = { ours: 0, openssl: 0 };
      const rssBefore = process.memoryUsage().rss;
      for (let i = 0; i < 3; i++) {
        const r = await throughput(path, size);
        best = { ours: Math.max(best.ours, r.ours), openssl: Math.max(best.openssl, r.openssl) };
      }
      peak.push((process.memoryUsage().rss - rssBefore) / MiB);
      if (size === 256 * MiB) {
        ctx.report({ bench: 'hash', metric: 'sha256File throughput (256 MiB)', value: best.ours, unit: 'MiB/s', baseline: best.openssl, note: 'baseline: openssl dgst -sha256 on the same file', goal: 'ratio >= 0.9' });
      }
      rmSync(path);
    }
    ctx.report({ bench: 'hash', metric: 'RSS growth while hashing 256 MiB', value: peak[1] ?? NaN, unit: 'MiB', baseline: peak[0] ?? NaN, note: 'baseline: the same for 64 MiB; ~1 means memory independent of size', goal: 'independent of file size' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
