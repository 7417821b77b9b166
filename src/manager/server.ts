// `trustlaunch manager serve`: opens the manager directory's config, TLS identity and
// database, reconciles VMs left mid-way by a previous run, starts the node monitor, then
// serves the API over HTTPS and writes the URL it listens on to DIR/endpoint.
import { rm } from 'node:fs/promises';
import { readSecretFile, writeFileAtomic } from '../crypto/files.js';
import { createHttpServer, listen } from '../http/server.js';
import { openDatabase, redactUrl, type DatabaseHandle } from '../store/index.js';
import { databaseUrl, managerPaths, readManagerConfig, readTextFile, type ManagerConfig } from './config.js';
import { MANAGER_NAMESPACE, managerMigrations } from './db/migrations.js';
import type { ManagerSchema } from './db/schema.js';
import { registerManagerRoutes } from './http/app.js';
import { BlobStore } from './images/blob-store.js';
import type { ReconcileSummary } from './reconcile.js';
import { ManagerService } from './service.js';
import { ensureBootstrapAdmin } from './users.js';

export interface StartManagerOptions {
  readonly dir: string;
  /** Overrides the config's listen address (port 0: any free port). */
  readonly host?: string;
  readonly port?: number;
  /** A database URL that overrides the config's (docs/storage.md). */
  readonly database?: string;
  /** pino options, or false (the default) for no logs. */
  readonly logger?: boolean | { level?: string; file?: string };
  /** Overrides of config fields (tests and `trustlaunch up`). */
  readonly overrides?: Partial<Omit<ManagerConfig, 'version' | 'adminTokenHash'>>;
}

export interface RunningManager {
  readonly url: string;
  /** PEM of the CA certificate clients pin for this manager's HTTPS. */
  readonly caCertificate: string;
  readonly service: ManagerService;
  readonly database: string;
  /** What start-up reconciliation did to VMs left in transitional states. */
  readonly reconciled: ReconcileSummary;
  close(): Promise<void>;
}

export async function startManager(opts: StartManagerOptions): Promise<RunningManager> {
  const paths = managerPaths(opts.dir);
  const config: ManagerConfig = { ...(await readManagerConfig(opts.dir)), ...opts.overrides };
  const tls = {
    cert: await readTextFile(paths.tlsCert),
    key: (await readSecretFile(paths.tlsKey)).toString('utf8'),
  };
  const caCertificate = await readTextFile(paths.tlsCa);
  const dbUrl = databaseUrl(opts.dir, config, opts.database);
  const store: DatabaseHandle<ManagerSchema> = await openDatabase<ManagerSchema>(dbUrl, { migrations: managerMigrations, namespace: MANAGER_NAMESPACE });
  let service: ManagerService | undefined;
  try {
    await ensureBootstrapAdmin(store.db, config.adminTokenHash);
    const blobs = new BlobStore(paths.images);
    await blobs.init();
    const app = await createHttpServer({
      name: 'manager',
      version: '1',
      description: 'trustlaunch cloud manager (untrusted by design: users believe only the CA)',
      tls,
      logger: opts.logger ?? false,
      // Image uploads stream for as long as they need; idle connections still time out.
      requestTimeoutMs: 0,
      readiness: [{ name: 'database', check: () => store.ping() }],
    });
    service = new ManagerService({ db: store.db, config, blobs, log: app.log });
    registerManagerRoutes(app, service);
    const reconciled = await service.start();
    const bound = await listen(app, opts.host ?? config.listen.host, opts.port ?? config.listen.port);
    await writeFileAtomic(paths.endpoint, `${bound.url}\n`);
    const running = service;
    let closing: Promise<void> | undefined;
    return {
      url: bound.url,
      caCertificate,
      service: running,
      database: redactUrl(dbUrl),
      reconciled,
      close: () =>
        (closing ??= (async () => {
          await rm(paths.endpoint, { force: true });
          await app.close();
          await running.close();
          await store.close();
        })()),
    };
  } catch (e) {
    await service?.close();
    await store.close();
    throw e;
  }
}
