// Group commit of judgements (docs/ca.md "Storage"): requests that arrive while a commit
// is in flight wait and are committed together in the next one — one transaction and one
// fsync (SQLite) or WAL flush (PostgreSQL) for the whole group (verifier/commit-group.ts)
// — and each request is answered only after the commit that holds its decision and
// receipt. After each commit the stored nonces are published, waking long-polls in every
// CA process on the database.
import type { Notifier } from '../../store/index.js';
import type { Judgement } from './judge.js';
import type { Decision, GroupResult } from './commit-group.js';

export type { Decision } from './commit-group.js';

export const RECEIPTS_CHANNEL = 'ca_receipts';
/** Nonces per notification: 44 bytes each, under the 7999-byte payload bound. */
const NONCES_PER_PAYLOAD = 180;
const MAX_GROUP = 512;

/** Commits one group: in this thread, or in the SQLite commit thread. */
export type GroupWriter = (judgements: readonly Judgement[]) => Promise<GroupResult>;

interface Pending {
  readonly judgement: Judgement;
  readonly resolve: (d: Decision) => void;
  readonly reject: (e: unknown) => void;
}

export class DecisionCommitter {
  readonly #write: GroupWriter;
  readonly #notifier: Notifier;
  readonly #onError: (e: Error) => void;
  #queue: Pending[] = [];
  #running: Promise<void> | undefined;
  /** Statistics for the benchmark and logs. */
  commits = 0;
  committed = 0;

  constructor(write: GroupWriter, notifier: Notifier, onError: (e: Error) => void) {
    this.#write = write;
    this.#notifier = notifier;
    this.#onError = onError;
  }

  /** Resolves once the judgement's decision (and receipt, if stored) is durable. */
  submit(judgement: Judgement): Promise<Decision> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ judgement, resolve, reject });
      this.#running ??= this.#drain();
    });
  }

  /** Resolves when everything submitted so far is committed. */
  async idle(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #drain(): Promise<void> {
    try {
      // Let the event loop deliver what has arrived meanwhile: it all joins this group.
      await yieldToEventLoop();
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0, MAX_GROUP);
        try {
          const result = await this.#write(group.map((p) => p.judgement));
          this.commits++;
          this.committed += group.length;
          group.forEach((p, i) => p.resolve(result.decisions[i] as Decision));
          await this.#publish(result.stored);
        } catch (e) {
          for (const p of group) p.reject(e);
        }
        await yieldToEventLoop();
      }
    } finally {
      this.#running = undefined;
    }
  }

  async #publish(nonces: readonly string[]): Promise<void> {
    for (let i = 0; i < nonces.length; i += NONCES_PER_PAYLOAD) {
      await this.#notifier.publish(RECEIPTS_CHANNEL, nonces.slice(i, i + NONCES_PER_PAYLOAD).join(' ')).catch((e: unknown) => this.#onError(e as Error));
    }
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
