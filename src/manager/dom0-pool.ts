// One Dom0Client per node, made from the credentials in the inventory and replaced when a
// node re-joins with new ones.
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { TrustlaunchError } from '../protocol/errors.js';
import type { ManagerSchema } from './db/schema.js';
import { Dom0Client, type Dom0ClientOptions } from './dom0-client.js';
import { nodeCredentials, type NodeCredentials } from './nodes.js';

function fingerprint(c: NodeCredentials): string {
  return createHash('sha256').update(JSON.stringify([c.endpoint, c.dom0Ca, c.dom0Token])).digest('hex');
}

export class Dom0Pool {
  readonly #clients = new Map<string, { key: string; client: Dom0Client }>();

  constructor(
    private readonly db: Kysely<ManagerSchema>,
    private readonly options: Dom0ClientOptions,
  ) {}

  /** The client for a node in the inventory; NOT_FOUND when the node is not (any more). */
  async get(nodeId: string): Promise<Dom0Client> {
    const creds = await nodeCredentials(this.db, nodeId);
    if (creds === undefined) {
      await this.forget(nodeId);
      throw new TrustlaunchError('NOT_FOUND', `node ${nodeId} is not in the inventory`);
    }
    const key = fingerprint(creds);
    const cached = this.#clients.get(nodeId);
    if (cached?.key === key) return cached.client;
    if (cached !== undefined) void cached.client.close().catch(() => undefined);
    const client = new Dom0Client(creds, this.options);
    this.#clients.set(nodeId, { key, client });
    return client;
  }

  async forget(nodeId: string): Promise<void> {
    const cached = this.#clients.get(nodeId);
    this.#clients.delete(nodeId);
    await cached?.client.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    const all = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.allSettled(all.map((c) => c.client.close()));
  }
}
