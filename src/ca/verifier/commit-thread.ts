// SQLite commits in a thread of their own. better-sqlite3 is synchronous: a commit blocks
// its thread for the WAL fsync (a few milliseconds here), and on the main thread that
// stalls every HTTPS connection meanwhile. This thread holds its own connection to the
// database file (store/sqlite-commit.ts) and runs verifier/commit-group.ts; the main
// thread keeps its connection for reads (never blocked by a writer in WAL mode) and the
// rare admin and registration writes (which wait, up to busy_timeout, for a commit in
// progress). A reply names a stored receipt that is the judgement's own (nearly always)
// instead of copying it back.
import type { Worker } from 'node:worker_threads';
import type { JudgeSettings } from './judge.js';
import type { Judgement } from './judge.js';
import type { Decision, GroupResult } from './commit-group.js';
import type { IssuedReceipt } from '../issuer/issuer.js';
import type { GroupWriter } from './committer.js';
import { siblingModule, startThread } from '../threads.js';

export interface CommitThreadRequest {
  readonly id: number;
  readonly judgements: readonly Judgement[];
}
export type CommitThreadReply = { readonly id: number; readonly result: WireGroupResult } | { readonly id: number; readonly error: string };

/** A Decision on the way back: `own` when the stored receipt is the one the judgement carried. */
type WireDecision = Omit<Decision, 'stored'> & { readonly own?: true; readonly stored?: IssuedReceipt };
export interface WireGroupResult {
  readonly decisions: readonly WireDecision[];
  readonly stored: readonly string[];
}

export function toWire(result: GroupResult, judgements: readonly Judgement[]): WireGroupResult {
  return {
    stored: result.stored,
    decisions: result.decisions.map((d, i) => {
      if (d.stored === undefined || d.stored !== judgements[i]?.issued) return d;
      const { stored: _own, ...rest } = d;
      return { ...rest, own: true };
    }),
  };
}

function fromWire(wire: WireGroupResult, judgements: readonly Judgement[]): GroupResult {
  return {
    stored: [...wire.stored],
    decisions: wire.decisions.map((d, i): Decision => {
      const { own, ...rest } = d;
      const issued = judgements[i]?.issued;
      if (own !== true) return rest;
      if (issued === undefined) throw new Error('the commit thread named a receipt the judgement does not carry');
      return { ...rest, stored: issued };
    }),
  };
}

export interface CommitThread {
  readonly write: GroupWriter;
  close(): Promise<void>;
}

/** Starts the thread on `databaseUrl` (already migrated by the main thread's handle). */
export async function startCommitThread(databaseUrl: string, settings: JudgeSettings): Promise<CommitThread> {
  const worker: Worker = startThread(siblingModule(import.meta.url, 'commit-worker'), { databaseUrl, settings });
  const pending = new Map<number, { judgements: readonly Judgement[]; resolve: (r: GroupResult) => void; reject: (e: Error) => void }>();
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
    else p?.resolve(fromWire(m.result, p.judgements));
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`the commit thread exited with ${code}`)));
  return {
    write: (judgements) =>
      new Promise((resolve, reject) => {
        if (failure !== undefined) return reject(failure);
        const id = next++;
        pending.set(id, { judgements, resolve, reject });
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
