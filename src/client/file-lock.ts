// One writer at a time for a file that is read, changed and replaced (known_hosts): within
// this process a promise chain per path, across processes a lock file created O_EXCL that
// holds its owner's pid. A lock whose owner no longer runs is stale and taken over. Waiting
// is bounded.
import { constants } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import { TrustlaunchError } from '../protocol/errors.js';

const chains = new Map<string, Promise<unknown>>();
const WAIT_MS = 15_000;

/** Runs `fn` holding the lock `${path}.lock`. */
export async function withFileLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const previous = chains.get(path) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(async () => {
    const release = await acquire(`${path}.lock`);
    try {
      return await fn();
    } finally {
      await release();
    }
  });
  chains.set(path, run);
  try {
    return await run;
  } finally {
    if (chains.get(path) === run) chains.delete(path);
  }
}

async function acquire(lock: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + WAIT_MS;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      const handle = await open(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => unlink(lock).catch(() => undefined);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (await stale(lock)) {
      await unlink(lock).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) throw new TrustlaunchError('TIMEOUT', `${lock} stays locked by another trustlaunch process`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** A lock file whose pid does not run (or that holds no pid after a moment) is stale. */
async function stale(lock: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(lock, 'utf8');
  } catch {
    return false; // gone already: the next attempt takes it
  }
  const pid = Number(text.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return false; // being written; look again
  if (pid === process.pid) return false; // ours, held by another chain of this process
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
