// SQLite commits in a thread of their own. better-sqlite3 is synchronous: a commit blocks
// its thread for the WAL fsync (a few milliseconds here), and on the main thread that
// stalls every HTTPS connection meanwhile. This thread holds its own connection to the
// database file and runs verifier/commit-group.ts; the main thread keeps its connection
// for reads (never blocked by a writer in WAL mode) and the rare admin and registration
// writes (which wait, up to busy_timeout, for a commit in progress).
import type { Worker } from 'node:worker_threads';
import type { JudgeSettings } from './judge.js';
import type { Judgement } from './judge.js';
import type { GroupResult } from './commit-group.js';
import type { GroupWriter } from './committer.js';
import { siblingModule, startThread } from '../threads.js';

export interface CommitThreadRequest {
  readonly id: number;
  readonly judgements: readonly Judgement[];
}
export type CommitThreadReply = { readonly id: number; readonly result: GroupResult } | { readonly id: number; readonly error: string };

export interface CommitThread {
  readonly write: GroupWriter;
  close(): Promise<void>;
}

/** Starts the thread on `databaseUrl` (already migrated by the main thread's handle). */
export async function startCommitThread(databaseUrl: string, settings: JudgeSettings): Promise<CommitThread> {
  const worker: Worker = startThread(siblingModule(import.meta.url, 'commit-worker'), { databaseUrl, settings });
  const pending = new Map<number, { resolve: (r: GroupResult) => void; reject: (e: Error) => void }>();
  let next = 1;
  let failure: Error | undefined;
  const fail = (e: Error): void => {
    failure ??= e;
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };
  await new Promise<void>((resolve, reject) => {
    worker.once('message', (m: unknown) => (m === 'ready' ? resolve() : reject(new Error(String((m as { error?: unknown }).error ?? m)))));
    worker.once('error', reject);
  });
  worker.on('message', (m: CommitThreadReply) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if ('error' in m) p?.reject(new Error(m.error));
    else p?.resolve(m.result);
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`the commit thread exited with ${code}`)));
  return {
    write: (judgements) =>
      new Promise((resolve, reject) => {
        if (failure !== undefined) return reject(failure);
        const id = next++;
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, judgements } satisfies CommitThreadRequest);
      }),
    close: async () => {
      worker.postMessage('close');
      await new Promise<void>((resolve) => {
        worker.once('exit', () => resolve());
        setTimeout(() => void worker.terminate().then(() => resolve()), 5_000).unref();
      });
    },
  };
}
