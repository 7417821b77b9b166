// Helpers for tests that use real system components. A missing component fails the
// test with a clear message; it never skips (scripts/setup-system.sh installs them).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function requireCommand(name: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`required command ${name} is missing; scripts/setup-system.sh installs it (or: apt-get install the package that has it)`);
  }
}

/** The PostgreSQL URL scripts/setup-system.sh exported; tests that need PostgreSQL fail without it. */
export function requirePostgresUrl(): string {
  const url = process.env['TRUSTLAUNCH_TEST_PG'];
  if (url === undefined || url === '') {
    throw new Error('TRUSTLAUNCH_TEST_PG is not set: run the suite through `npm test` (scripts/setup-system.sh starts PostgreSQL)');
  }
  return url;
}

/** A fresh temporary directory, removed when `dispose` is called. */
export function tempDir(prefix = 'tl-test-'): { path: string; dispose: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, dispose: () => rmSync(path, { recursive: true, force: true }) };
}
