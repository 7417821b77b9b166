// Long-polls for receipts (`GET /v1/receipts/{nonce}?wait=S`). One subscription per
// process to the receipts channel (payloads: space-separated nonces of a commit) wakes the
// waiters of those nonces; each waiter also looks again every RECHECK_MS, because a
// notification can be missed (a lost LISTEN session; another process on one SQLite file).
// Like store/wait.ts's waitFor, a waiter registers before its first look, so a receipt
// committed in between still wakes it.
import type { DatabaseHandle } from '../../store/index.js';
import { findReceipt } from '../store/receipts.js';
import type { CaSchema } from '../store/schema.js';
import { RECEIPTS_CHANNEL } from '../verifier/committer.js';

export const MAX_WAIT_SECONDS = 60;
const RECHECK_MS = 1_000;
/** At most this many concurrent long-polls per process; more wait no longer than one look. */
const MAX_WAITERS = 10_000;

export type StoredReceipt = NonNullable<Awaited<ReturnType<typeof findReceipt>>>;

export class ReceiptWaiters {
  readonly #store: DatabaseHandle<CaSchema>;
  readonly #waiters = new Map<string, Set<() => void>>();
  #count = 0;
  #unsubscribe: (() => void) | undefined;

  private constructor(store: DatabaseHandle<CaSchema>) {
    this.#store = store;
  }

  static async open(store: DatabaseHandle<CaSchema>): Promise<ReceiptWaiters> {
    const w = new ReceiptWaiters(store);
    w.#unsubscribe = await store.notifier.subscribe(RECEIPTS_CHANNEL, (payload) => {
      for (const nonce of payload.split(' ')) for (const wake of w.#waiters.get(nonce) ?? []) wake();
    });
    return w;
  }

  /** The receipt for `nonce`, waiting up to `waitMs` for it; undefined when there is none by then. */
  async wait(nonce: string, waitMs: number, signal?: AbortSignal): Promise<StoredReceipt | undefined> {
    const look = (): Promise<StoredReceipt | undefined> => findReceipt(this.#store.db, nonce);
    if (waitMs <= 0 || this.#count >= MAX_WAITERS) return look();
    const deadline = Date.now() + Math.min(waitMs, MAX_WAIT_SECONDS * 1000);
    let woken = false;
    let wake: (() => void) | undefined;
    const listener = (): void => {
      woken = true;
      wake?.();
    };
    const set = this.#waiters.get(nonce) ?? new Set();
    set.add(listener);
    this.#waiters.set(nonce, set);
    this.#count++;
    try {
      for (;;) {
        woken = false;
        const found = await look();
        if (found !== undefined) return found;
        const left = deadline - Date.now();
        if (left <= 0 || signal?.aborted === true) return undefined;
        if (!woken) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(done, Math.min(RECHECK_MS, left));
            function done(): void {
              clearTimeout(timer);
              signal?.removeEventListener('abort', done);
              resolve();
            }
            wake = done;
            signal?.addEventListener('abort', done, { once: true });
          });
          wake = undefined;
        }
      }
    } finally {
      this.#count--;
      set.delete(listener);
      if (set.size === 0) this.#waiters.delete(nonce);
    }
  }

  close(): void {
    this.#unsubscribe?.();
  }
}
