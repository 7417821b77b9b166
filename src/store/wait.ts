// The long-poll pattern, done once: subscribe, then look, then sleep until a notification
// or the re-check interval, and look again — until found or the deadline. Subscribing
// before the first look means a change committed in between still wakes us; the interval
// covers notifications that never arrive (SQLite in another process, a lost LISTEN session).
import type { Notifier } from './notifier.js';

export interface WaitOptions {
  /** Give up (resolve undefined) after this long. At most 10 minutes. */
  readonly timeoutMs: number;
  /** Look again at least this often even without a notification (default 1 s). */
  readonly recheckMs?: number;
  /** Wake only for this payload on the channel (e.g. the key being waited for). */
  readonly payload?: string;
  readonly signal?: AbortSignal;
}

const MAX_TIMEOUT_MS = 10 * 60_000;
const MIN_RECHECK_MS = 10;
const DEFAULT_RECHECK_MS = 1_000;

/**
 * Resolves with the first value `check` returns that is not undefined, or with undefined
 * when the time is up or `signal` aborts.
 */
export async function waitFor<T>(
  notifier: Notifier,
  channel: string,
  check: () => Promise<T | undefined>,
  opts: WaitOptions,
): Promise<T | undefined> {
  if (!(opts.timeoutMs >= 0 && opts.timeoutMs <= MAX_TIMEOUT_MS)) {
    throw new TypeError(`timeoutMs must be between 0 and ${MAX_TIMEOUT_MS}`);
  }
  const recheckMs = Math.max(opts.recheckMs ?? DEFAULT_RECHECK_MS, MIN_RECHECK_MS);
  const deadline = Date.now() + opts.timeoutMs;
  let notified = false;
  let wake: (() => void) | undefined;
  const unsubscribe = await notifier.subscribe(channel, (payload) => {
    if (opts.payload !== undefined && payload !== opts.payload) return;
    notified = true;
    wake?.();
  });
  try {
    for (;;) {
      notified = false;
      const value = await check();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0 || opts.signal?.aborted === true) return undefined;
      if (!notified) await sleep(Math.min(recheckMs, left), opts.signal, (w) => (wake = w));
      wake = undefined;
    }
  } finally {
    unsubscribe();
  }
}

/**
 * Sleeps `ms`, or until the signal aborts (then resolves early, without throwing), or until
 * woken through the function handed to `expose`.
 */
export function sleep(ms: number, signal?: AbortSignal, expose?: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    expose?.(done);
  });
}
