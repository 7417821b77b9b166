// A manager for tests: `manager init` into a temporary directory, then the service started
// in this process on a free loopback port against the database the test names, with short
// intervals. Clients are pinned to the manager's own TLS CA.
import { join } from 'node:path';
import { JsonClient } from '../../src/http/client.js';
import type { ManagerConfig } from '../../src/manager/config.js';
import { initManager, type InitOptions } from '../../src/manager/init.js';
import { startManager, type RunningManager } from '../../src/manager/server.js';
import { tempDir } from '../support/system.js';

export const FAST: InitOptions['settings'] = {
  nodePollIntervalMs: 150,
  nodeDownAfterFailures: 2,
  nodeRequestTimeoutMs: 3_000,
  vmPollIntervalMs: 20,
  launchTimeoutMs: 60_000,
  stopTimeoutMs: 20_000,
};

export interface TestManager {
  readonly dir: string;
  readonly adminToken: string;
  readonly caCertificate: string;
  readonly running: RunningManager;
  readonly url: string;
  /** A client with the admin token. */
  readonly admin: JsonClient;
  /** A client for `token` (closed at dispose). */
  client(token?: string): JsonClient;
  /** Adds a user through the API; returns its token and a client. */
  addUser(name: string, role?: 'admin' | 'user'): Promise<{ token: string; client: JsonClient }>;
  /** Stops the service (the directory and database stay). */
  stop(): Promise<void>;
  /** Starts the service again on the same directory and database. */
  restart(overrides?: Partial<ManagerConfig>): Promise<RunningManager>;
  dispose(): Promise<void>;
}

export async function startTestManager(o: { databaseUrl: string; settings?: InitOptions['settings']; overrides?: Partial<ManagerConfig> }): Promise<TestManager> {
  const tmp = tempDir('tl-manager-');
  const dir = join(tmp.path, 'manager');
  const init = await initManager({ dir, listenPort: 0, settings: { ...FAST, ...o.settings } });
  const start = (overrides?: Partial<ManagerConfig>): Promise<RunningManager> =>
    startManager({ dir, database: o.databaseUrl, ...(overrides ?? o.overrides ? { overrides: { ...o.overrides, ...overrides } } : {}) });
  let running = await start();
  let stopped = false;
  const clients: JsonClient[] = [];
  const client = (token?: string): JsonClient => {
    const c = new JsonClient({ baseUrl: running.url, ca: init.caCertificate, ...(token === undefined ? {} : { token }), timeoutMs: 30_000 });
    clients.push(c);
    return c;
  };
  let admin = client(init.adminToken);
  const tm: TestManager = {
    dir,
    adminToken: init.adminToken,
    caCertificate: init.caCertificate,
    get running() {
      return running;
    },
    get url() {
      return running.url;
    },
    get admin() {
      return admin;
    },
    client,
    addUser: async (name, role = 'user') => {
      const { token } = await admin.call<{ token: string }>('POST', '/v1/users', { body: { name, role } });
      return { token, client: client(token) };
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await running.close();
    },
    restart: async (overrides) => {
      await tm.stop();
      running = await start(overrides);
      stopped = false;
      admin = client(init.adminToken);
      return running;
    },
    dispose: async () => {
      await Promise.allSettled(clients.map((c) => c.close()));
      await tm.stop().catch(() => undefined);
      tmp.dispose();
    },
  };
  return tm;
}
