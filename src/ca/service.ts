// `trustlaunch ca serve`: the CA as one process — HTTPS (fastify) and the database on the
// main thread, judging and signing in worker threads, decisions group-committed. Several
// such processes on one PostgreSQL database behave as one CA (docs/ca.md "Storage").
import { availableParallelism } from 'node:os';
import { TrustlaunchError, isTrustlaunchError, type ErrorCode } from '../protocol/errors.js';
import { createHttpServer, listen, type HttpServer } from '../http/server.js';
import { serverTlsOptions } from '../crypto/tls.js';
import { openDatabase, type DatabaseHandle } from '../store/index.js';
import { loadEndorsementRoots, type CaMaterial } from './directory.js';
import { parseListen } from './config.js';
import { registerAdminRoutes } from './http/admin-routes.js';
import { registerPublicRoutes } from './http/public-routes.js';
import { PolicyCache } from './policy/cache.js';
import { ReceiptWaiters } from './receipts/waiters.js';
import { Registrar } from './registrar/registrar.js';
import { caMigrations, CA_NAMESPACE } from './store/migrations.js';
import type { CaSchema } from './store/schema.js';
import { DecisionCommitter } from './verifier/committer.js';
import { commitGroup } from './verifier/commit-group.js';
import { startCommitThread } from './verifier/commit-thread.js';
import type { JudgeSettings } from './verifier/judge.js';
import { Issuer } from './issuer/issuer.js';
import { createJudgePool, type JudgePool } from './verifier/pool.js';

const pkgVersion = '0.1.0';

export interface CaServiceOptions {
  readonly material: CaMaterial;
  /** sqlite:/path, a path, or postgres://… */
  readonly databaseUrl: string;
  /** HOST:PORT (default: ca.json's listen); port 0 picks a free port. */
  readonly listen?: string;
  /** Judge threads (default: one per CPU; 0 judges on the main thread). */
  readonly threads?: number;
  /** pino level, or false for no logs. */
  readonly logLevel?: string | false;
  readonly logFile?: string;
  /**
   * Commit evidence decisions in a thread of their own (default: on SQLite files, whose
   * synchronous commits would otherwise stall the main thread for every fsync).
   */
  readonly commitThread?: boolean;
}

export interface CaService {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly fingerprint: string;
  readonly store: DatabaseHandle<CaSchema>;
  readonly app: HttpServer;
  readonly committer: DecisionCommitter;
  readonly threads: number;
  close(): Promise<void>;
}

export function judgeSettings(m: CaMaterial): JudgeSettings {
  return {
    issuer: m.config.issuer,
    receiptKey: m.receiptKey,
    receiptKeyId: m.receiptKeyId,
    sshCaKey: m.sshCaKey,
    receiptLifetimeSeconds: m.config.receiptLifetimeSeconds,
    evidenceSkewSeconds: m.config.evidenceSkewSeconds,
  };
}

export async function startCaService(opts: CaServiceOptions): Promise<CaService> {
  const m = opts.material;
  const { host, port } = parseListen(opts.listen ?? m.config.listen);
  const app = await createHttpServer({
    name: 'ca',
    version: pkgVersion,
    description: 'trustlaunch Certificate Authority: registrar, verifier, receipts (docs/ca.md)',
    tls: serverTlsOptions(m.tls.chain, m.tls.privateKey),
    logger: opts.logLevel === false ? false : { level: opts.logLevel ?? 'info', ...(opts.logFile === undefined ? {} : { file: opts.logFile }) },
    readiness: [{ name: 'database', check: () => store.ping() }],
  });
  const onError = (e: Error): void => app.log.error({ err: e }, 'background failure');
  const store = await openDatabase<CaSchema>(opts.databaseUrl, { migrations: caMigrations, namespace: CA_NAMESPACE, onError });
  const opened: Array<() => Promise<void> | void> = [() => store.close()];
  try {
    const policy = await PolicyCache.open(store, onError);
    opened.push(() => policy.close());
    const settings = judgeSettings(m);
    const pool: JudgePool = createJudgePool(settings, policy.snapshot, opts.threads ?? availableParallelism());
    opened.push(() => pool.close());
    policy.onChange((s) => pool.setPolicy(s));
    const commitThread = opts.commitThread ?? (store.dialect === 'sqlite' && !opts.databaseUrl.includes(':memory:')) ? await startCommitThread(opts.databaseUrl, settings) : undefined;
    if (commitThread !== undefined) opened.push(() => commitThread.close());
    const issuer = new Issuer(settings);
    const committer = new DecisionCommitter(commitThread?.write ?? ((judgements) => commitGroup(store.db, issuer, judgements)), store.notifier, onError);
    const waiters = await ReceiptWaiters.open(store);
    opened.push(() => waiters.close());
    const registrar = new Registrar({
      store,
      endorsementRoots: () => loadEndorsementRoots(m.dir, m.config.paths.endorsementRoots),
      caChain: [m.root.certificate.pem],
      registrationTtlSeconds: m.config.registrationTtlSeconds,
      onRegistered: () => policy.changed(),
    });

    const evidence = async (body: string): Promise<{ receipt: string; status: 'affirming'; hostCertificate: string }> => {
      let result = await pool.judge(body, false);
      if (result.kind === 'stale') {
        await policy.reload();
        result = await pool.judge(body, true);
      }
      if (result.kind !== 'judged') {
        app.log.error({ result }, 'evidence judge failed');
        throw new TrustlaunchError('INTERNAL', 'the evidence could not be judged');
      }
      let decision;
      try {
        decision = await committer.submit(result.judgement);
      } catch (e) {
        if (isTrustlaunchError(e)) throw e;
        onError(e as Error);
        throw new TrustlaunchError('UNAVAILABLE', 'the decision could not be stored; nothing was issued');
      }
      const stored = decision.stored;
      if (decision.outcome === 'affirming' && stored?.hostCertificate !== undefined) return { receipt: stored.receipt, status: 'affirming', hostCertificate: stored.hostCertificate };
      const refusal = decision.refusal ?? { step: 'schema', code: 'INTERNAL', message: 'no reason recorded' };
      throw new TrustlaunchError(refusal.code as ErrorCode, refusal.message, { detail: { step: refusal.step, ...(stored === undefined ? {} : { receipt: stored.receipt }) } });
    };

    registerPublicRoutes(app, { identity: m.identity, registrar, waiters, evidence });
    registerAdminRoutes(app, { adminTokenHash: m.config.adminTokenHash, store, policy, enrollmentTokenTtlSeconds: m.config.enrollmentTokenTtlSeconds });
    const bound = await listen(app, host, port);
    return {
      url: bound.url,
      host: bound.host,
      port: bound.port,
      fingerprint: m.fingerprint,
      store,
      app,
      committer,
      threads: pool.threads,
      close: async () => {
        await app.close();
        await committer.idle();
        for (const close of opened.reverse()) await close();
      },
    };
  } catch (e) {
    await app.close().catch(() => undefined);
    for (const close of opened.reverse()) await Promise.resolve(close()).catch(() => undefined);
    throw e;
  }
}
