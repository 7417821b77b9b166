// PostgreSQL LISTEN/NOTIFY. Publishing is `select pg_notify(…)` through the pool; listening
// needs a session of its own, so one dedicated pg.Client (not from the pool) holds every
// LISTEN of this handle. When that session dies it is replaced, with backoff, and every
// channel listened again; notifications sent while it was down are lost (waiters re-check).
import pg from 'pg';
import { TrustlaunchError } from '../protocol/errors.js';
import {
  ListenerRegistry,
  checkChannel,
  checkPayload,
  type NotificationListener,
  type Notifier,
  type Unsubscribe,
} from './notifier.js';

const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 5_000;

export class PostgresNotifier implements Notifier {
  readonly #config: pg.ClientConfig;
  readonly #notify: (channel: string, payload: string) => Promise<void>;
  readonly #onError: (error: Error) => void;
  readonly #registry: ListenerRegistry;
  /** The LISTEN of each channel: resolved once the server acknowledged it. */
  readonly #listening = new Map<string, Promise<void>>();
  #client: pg.Client | undefined;
  #connecting: Promise<pg.Client> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelay = RECONNECT_FIRST_MS;
  #closed = false;

  /**
   * `config`: settings for the listening session. `notify`: sends one notification (the
   * handle passes `select pg_notify($1, $2)` on its pool).
   */
  constructor(config: pg.ClientConfig, notify: (channel: string, payload: string) => Promise<void>, onError: (error: Error) => void) {
    this.#config = config;
    this.#notify = notify;
    this.#onError = onError;
    this.#registry = new ListenerRegistry(onError);
  }

  async publish(channel: string, payload: string): Promise<void> {
    checkChannel(channel);
    checkPayload(payload);
    if (this.#closed) throw new Error('notifier is closed');
    await this.#notify(channel, payload);
  }

  async subscribe(channel: string, listener: NotificationListener): Promise<Unsubscribe> {
    checkChannel(channel);
    if (this.#closed) throw new Error('notifier is closed');
    const own: NotificationListener = (payload) => listener(payload);
    if (this.#registry.add(channel, own)) this.#listening.set(channel, this.#listen(channel));
    try {
      await this.#listening.get(channel);
    } catch (e) {
      this.#unsubscribe(channel, own);
      throw new TrustlaunchError('UNAVAILABLE', `cannot LISTEN on PostgreSQL: ${(e as Error).message}`, { cause: e });
    }
    return () => this.#unsubscribe(channel, own);
  }

  #unsubscribe(channel: string, listener: NotificationListener): void {
    if (!this.#registry.remove(channel, listener)) return;
    this.#listening.delete(channel);
    // Queued on the session after any LISTEN of the same channel, so the order holds.
    this.#client?.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch((e: unknown) => this.#report(e));
  }

  async #listen(channel: string): Promise<void> {
    const client = await this.#connection();
    await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
  }

  #connection(): Promise<pg.Client> {
    if (this.#client !== undefined) return Promise.resolve(this.#client);
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<pg.Client> {
    const client = new pg.Client(this.#config);
    // Attached before connect(): a pg.Client 'error' without a listener ends the process.
    client.on('error', (e) => this.#lost(client, e));
    client.on('end', () => this.#lost(client, undefined));
    client.on('notification', (n) => this.#registry.dispatch(n.channel, n.payload ?? ''));
    await client.connect();
    if (this.#closed) {
      await client.end();
      throw new Error('notifier is closed');
    }
    this.#client = client;
    return client;
  }

  #lost(client: pg.Client, error: Error | undefined): void {
    if (this.#client !== client) return; // an old or never-adopted session
    this.#client = undefined;
    client.end().catch(() => undefined); // already broken; only release its socket
    if (this.#closed) return;
    this.#report(error ?? new Error('PostgreSQL LISTEN session ended'));
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retryTimer !== undefined || this.#registry.channels().length === 0) return;
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(this.#retryDelay * 2, RECONNECT_MAX_MS);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#relisten().then(
        () => {
          this.#retryDelay = RECONNECT_FIRST_MS;
        },
        (e: unknown) => {
          this.#report(e);
          this.#scheduleReconnect();
        },
      );
    }, delay);
  }

  async #relisten(): Promise<void> {
    for (const channel of this.#registry.channels()) {
      const listened = this.#listen(channel);
      this.#listening.set(channel, listened);
      await listened;
    }
  }

  #report(e: unknown): void {
    this.#onError(e instanceof Error ? e : new Error(String(e)));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#registry.clear();
    this.#listening.clear();
    const client = this.#client ?? (await this.#connecting?.catch(() => undefined));
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }
}
