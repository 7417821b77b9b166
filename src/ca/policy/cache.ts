// Keeps this process's PolicySnapshot in step with the database. Admin changes publish on
// the `ca_policy` channel after their commit, which every CA process on the database
// (PostgreSQL) or in this process (SQLite) hears; the verifier also asks for a reload when
// a lookup misses (a node registered through another CA process a moment ago), and a slow
// periodic reload covers lost notifications. Revocations are additionally re-checked
// inside the commit that stores a receipt, so a stale snapshot can never affirm for a node
// or allowlist entry revoked before that commit.
import type { DatabaseHandle } from '../../store/index.js';
import { listAllowlist, listNodeKeys, listPlatformReferences } from '../store/policy.js';
import type { CaSchema } from '../store/schema.js';
import { buildSnapshot, EMPTY_POLICY, type PolicySnapshot } from './snapshot.js';

export const POLICY_CHANNEL = 'ca_policy';
const PERIODIC_RELOAD_MS = 30_000;

export class PolicyCache {
  readonly #store: DatabaseHandle<CaSchema>;
  readonly #listeners = new Set<(s: PolicySnapshot) => void>();
  readonly #onError: (e: Error) => void;
  #snapshot: PolicySnapshot = EMPTY_POLICY;
  #running: Promise<PolicySnapshot> | undefined;
  #queued: Promise<PolicySnapshot> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;

  private constructor(store: DatabaseHandle<CaSchema>, onError: (e: Error) => void) {
    this.#store = store;
    this.#onError = onError;
  }

  static async open(store: DatabaseHandle<CaSchema>, onError: (e: Error) => void): Promise<PolicyCache> {
    const cache = new PolicyCache(store, onError);
    cache.#unsubscribe = await store.notifier.subscribe(POLICY_CHANNEL, () => {
      cache.reload().catch(onError);
    });
    await cache.reload();
    cache.#timer = setInterval(() => {
      cache.reload().catch(onError);
    }, PERIODIC_RELOAD_MS);
    cache.#timer.unref();
    return cache;
  }

  get snapshot(): PolicySnapshot {
    return this.#snapshot;
  }

  onChange(listener: (s: PolicySnapshot) => void): void {
    this.#listeners.add(listener);
  }

  /**
   * Reloads from the database. A call made while a load runs gets the next load, which
   * starts when the running one ends and is shared by every caller that queued meanwhile:
   * each caller sees data read after its call, and a burst of calls costs two loads.
   */
  reload(): Promise<PolicySnapshot> {
    if (this.#running === undefined) {
      this.#running = this.#load().finally(() => {
        this.#running = undefined;
      });
      return this.#running;
    }
    const next = (): Promise<PolicySnapshot> => {
      this.#queued = undefined;
      return this.reload();
    };
    this.#queued ??= this.#running.then(next, next);
    return this.#queued;
  }

  async #load(): Promise<PolicySnapshot> {
    const { db } = this.#store;
    const nodes = await listNodeKeys(db);
    const allowlist = await listAllowlist(db);
    const platforms = await listPlatformReferences(db);
    this.#snapshot = buildSnapshot(this.#snapshot.version + 1, nodes, allowlist, platforms);
    for (const l of this.#listeners) l(this.#snapshot);
    return this.#snapshot;
  }

  /** Tells every CA process on the database that policy changed, and reloads here. */
  async changed(): Promise<void> {
    await this.#store.notifier.publish(POLICY_CHANNEL, 'changed').catch(this.#onError);
    await this.reload();
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#unsubscribe?.();
  }
}
