// Notifications: "something changed on channel C", so a waiter wakes without polling hard.
// PostgreSQL: LISTEN/NOTIFY, across every process on the database (pg-notifier.ts).
// SQLite: in-process only — every handle on one file in this process shares a hub; other
// processes on the same file are NOT notified. Either way a notification can be missed (a
// reconnect, a publish before subscribe), so waiters also re-check on an interval
// (waitFor in wait.ts does both).

export type NotificationListener = (payload: string) => void;
export type Unsubscribe = () => void;

export interface Notifier {
  /**
   * Sends `payload` to every subscriber of `channel`, this process's included. Not part of
   * any transaction: publish after the change has committed.
   */
  publish(channel: string, payload: string): Promise<void>;
  /**
   * Calls `listener` for each later publish on `channel`. Resolves once the subscription is
   * live (on PostgreSQL: LISTEN acknowledged), so a waiter can subscribe, then read the
   * database, then wait, without a gap a change could slip through.
   */
  subscribe(channel: string, listener: NotificationListener): Promise<Unsubscribe>;
}

/** Channel names: what a PostgreSQL identifier allows unquoted, so both dialects agree. */
const CHANNEL = /^[a-z][a-z0-9_]{0,62}$/;
/** PostgreSQL's NOTIFY payload must be shorter than 8000 bytes (default build). */
export const MAX_PAYLOAD_BYTES = 7999;

export function checkChannel(channel: string): void {
  if (!CHANNEL.test(channel)) throw new TypeError(`notification channel "${channel}" must match ${String(CHANNEL)}`);
}

export function checkPayload(payload: string): void {
  // Payloads are keys (an id, a nonce), not data: bounded, and no NUL (PostgreSQL text).
  if (Buffer.byteLength(payload, 'utf8') > MAX_PAYLOAD_BYTES || payload.includes('\0')) {
    throw new TypeError(`notification payload must be at most ${MAX_PAYLOAD_BYTES} UTF-8 bytes without NUL`);
  }
}

/** Listeners by channel; a throwing listener is reported and does not stop the others. */
export class ListenerRegistry {
  readonly #channels = new Map<string, Set<NotificationListener>>();
  readonly #onError: (error: Error) => void;

  constructor(onError: (error: Error) => void) {
    this.#onError = onError;
  }

  /** Adds; true when this is the channel's first listener. */
  add(channel: string, listener: NotificationListener): boolean {
    let set = this.#channels.get(channel);
    const first = set === undefined;
    if (set === undefined) this.#channels.set(channel, (set = new Set()));
    set.add(listener);
    return first;
  }

  /** Removes; true when the channel has no listener left. */
  remove(channel: string, listener: NotificationListener): boolean {
    const set = this.#channels.get(channel);
    if (set === undefined || !set.delete(listener)) return false;
    if (set.size > 0) return false;
    this.#channels.delete(channel);
    return true;
  }

  channels(): string[] {
    return [...this.#channels.keys()];
  }

  dispatch(channel: string, payload: string): void {
    // A copy: a listener may unsubscribe (itself or another) while we iterate.
    for (const listener of [...(this.#channels.get(channel) ?? [])]) {
      try {
        listener(payload);
      } catch (e) {
        this.#onError(e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  clear(): void {
    this.#channels.clear();
  }
}

/** One hub per SQLite file in this process, shared by every handle on that file. */
const hubs = new Map<string, { registry: ListenerRegistry; handles: number }>();

/** The SQLite notifier: an in-process hub keyed by the database file (or private for :memory:). */
export class InProcessNotifier implements Notifier {
  readonly #key: string | undefined;
  readonly #onError: (error: Error) => void;
  readonly #registry: ListenerRegistry;
  readonly #mine = new Map<NotificationListener, string>();
  #closed = false;

  /** `key`: the database file's real path; undefined for a private hub (:memory:). */
  constructor(key: string | undefined, onError: (error: Error) => void) {
    this.#key = key;
    this.#onError = onError;
    if (key === undefined) {
      this.#registry = new ListenerRegistry(onError);
      return;
    }
    let hub = hubs.get(key);
    if (hub === undefined) hubs.set(key, (hub = { registry: new ListenerRegistry(onError), handles: 0 }));
    hub.handles++;
    this.#registry = hub.registry;
  }

  // async, though nothing here waits: misuse rejects rather than throws, as on PostgreSQL.
  // eslint-disable-next-line @typescript-eslint/require-await
  async publish(channel: string, payload: string): Promise<void> {
    checkChannel(channel);
    checkPayload(payload);
    if (this.#closed) throw new Error('notifier is closed');
    // Delivered on a later turn, as PostgreSQL's would be: never inside publish().
    setImmediate(() => this.#registry.dispatch(channel, payload));
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async subscribe(channel: string, listener: NotificationListener): Promise<Unsubscribe> {
    checkChannel(channel);
    if (this.#closed) throw new Error('notifier is closed');
    // Wrapped, so one function subscribed twice is two subscriptions, close() can remove
    // exactly this handle's listeners from a shared hub, and a throw reaches this handle's onError.
    const own: NotificationListener = (payload) => {
      try {
        listener(payload);
      } catch (e) {
        this.#onError(e instanceof Error ? e : new Error(String(e)));
      }
    };
    this.#registry.add(channel, own);
    this.#mine.set(own, channel);
    return () => {
      this.#registry.remove(channel, own);
      this.#mine.delete(own);
    };
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const [listener, channel] of this.#mine) this.#registry.remove(channel, listener);
    this.#mine.clear();
    if (this.#key !== undefined) {
      const hub = hubs.get(this.#key);
      if (hub !== undefined && --hub.handles === 0) hubs.delete(this.#key);
    }
    return Promise.resolve();
  }
}
