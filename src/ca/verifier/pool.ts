// Judging on every core: a pool of worker threads, each running the pipeline and the
// signing (the CPU-heavy part: one P-256 verification and two signatures per receipt),
// while the main thread does HTTP and the database. Policy snapshots are posted to every
// worker before any job that must see them (a port delivers messages in order).
// With `threads: 0` the judge runs on the main thread (small deployments, tests).
import type { Worker } from 'node:worker_threads';
import { siblingModule, startThread } from '../threads.js';
import type { PolicySnapshot } from '../policy/snapshot.js';
import { EvidenceJudge, type JudgeResult, type JudgeSettings } from './judge.js';

export interface Job {
  readonly id: number;
  readonly body: string;
  readonly fresh: boolean;
}
/** Jobs travel in batches: every request that arrived in one event-loop turn, one message per thread. */
export type ToWorker = { readonly type: 'policy'; readonly policy: PolicySnapshot } | { readonly type: 'judge'; readonly jobs: readonly Job[] };
export interface FromWorker {
  readonly results: ReadonlyArray<{ readonly id: number; readonly result: JudgeResult }>;
}

export interface JudgePool {
  readonly threads: number;
  judge(body: string, fresh: boolean): Promise<JudgeResult>;
  setPolicy(policy: PolicySnapshot): void;
  close(): Promise<void>;
}

/** Respawns after a worker dies, at most this many times; then the main thread judges. */
const MAX_RESPAWNS = 10;

interface Slot {
  worker: Worker;
  readonly pending: Map<number, (r: JudgeResult) => void>;
  /** Jobs not yet posted (flushed at the end of this event-loop turn). */
  outbox: Job[];
}

function spawn(settings: JudgeSettings, policy: PolicySnapshot): Worker {
  return startThread(siblingModule(import.meta.url, 'worker'), { settings, policy });
}

class ThreadPool implements JudgePool {
  readonly threads: number;
  readonly #settings: JudgeSettings;
  readonly #slots: Slot[] = [];
  readonly #fallback: EvidenceJudge;
  #policy: PolicySnapshot;
  #next = 1;
  #respawns = 0;
  #closed = false;
  #flushScheduled = false;

  constructor(settings: JudgeSettings, policy: PolicySnapshot, threads: number) {
    this.threads = threads;
    this.#settings = settings;
    this.#policy = policy;
    this.#fallback = new EvidenceJudge(settings, policy);
    for (let i = 0; i < threads; i++) this.#slots.push(this.#start());
  }

  #start(existing?: Slot): Slot {
    const worker = spawn(this.#settings, this.#policy);
    const slot: Slot = existing ?? { worker, pending: new Map(), outbox: [] };
    slot.worker = worker;
    worker.on('message', (m: FromWorker | 'ready') => {
      if (m === 'ready') return;
      for (const { id, result } of m.results) {
        const done = slot.pending.get(id);
        slot.pending.delete(id);
        done?.(result);
      }
    });
    const died = (why: string): void => {
      if (slot.worker !== worker) return;
      for (const done of slot.pending.values()) done({ kind: 'error', message: `judge thread ${why}` });
      slot.pending.clear();
      slot.outbox = [];
      if (this.#closed) return;
      if (this.#respawns++ < MAX_RESPAWNS) this.#start(slot);
      else this.#slots.splice(this.#slots.indexOf(slot), 1);
    };
    worker.on('error', (e) => died(`failed: ${e.message}`));
    worker.on('exit', (code) => died(`exited with ${code}`));
    worker.unref();
    return slot;
  }

  judge(body: string, fresh: boolean): Promise<JudgeResult> {
    let best: Slot | undefined;
    for (const s of this.#slots) if (best === undefined || s.pending.size < best.pending.size) best = s;
    if (best === undefined) return Promise.resolve(this.#fallback.judge(body, fresh));
    const slot = best;
    const id = this.#next++;
    return new Promise((resolve) => {
      slot.pending.set(id, resolve);
      slot.outbox.push({ id, body, fresh });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#flushScheduled = false;
    for (const s of this.#slots) {
      if (s.outbox.length === 0) continue;
      s.worker.postMessage({ type: 'judge', jobs: s.outbox } satisfies ToWorker);
      s.outbox = [];
    }
  }

  setPolicy(policy: PolicySnapshot): void {
    this.#policy = policy;
    this.#fallback.setPolicy(policy);
    this.#flush(); // jobs queued before the change keep their order before it
    for (const s of this.#slots) s.worker.postMessage({ type: 'policy', policy } satisfies ToWorker);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
  }
}

class InlinePool implements JudgePool {
  readonly threads = 0;
  readonly #judge: EvidenceJudge;

  constructor(settings: JudgeSettings, policy: PolicySnapshot) {
    this.#judge = new EvidenceJudge(settings, policy);
  }

  judge(body: string, fresh: boolean): Promise<JudgeResult> {
    return Promise.resolve(this.#judge.judge(body, fresh));
  }

  setPolicy(policy: PolicySnapshot): void {
    this.#judge.setPolicy(policy);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export function createJudgePool(settings: JudgeSettings, policy: PolicySnapshot, threads: number): JudgePool {
  if (!Number.isInteger(threads) || threads < 0 || threads > 64) throw new TypeError('threads must be an integer 0..64');
  return threads === 0 ? new InlinePool(settings, policy) : new ThreadPool(settings, policy, threads);
}
