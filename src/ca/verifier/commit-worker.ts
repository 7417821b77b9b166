// The SQLite commit thread (verifier/commit-thread.ts): checks the database is migrated,
// opens its own connection (store/sqlite-commit.ts) and commits the groups it is sent;
// "ready" once open, then one reply per group.
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase, parseDatabaseUrl } from '../../store/index.js';
import { Issuer } from '../issuer/issuer.js';
import { caMigrations, CA_NAMESPACE } from '../store/migrations.js';
import type { CaSchema } from '../store/schema.js';
import { SqliteCommitConnection } from '../store/sqlite-commit.js';
import { commitGroupSqlite } from './commit-group.js';
import { toWire, type CommitThreadReply, type CommitThreadRequest } from './commit-thread.js';
import type { JudgeSettings } from './judge.js';
import { nameThisThread } from '../threads.js';

const port = parentPort;
if (port === null) throw new Error('verifier/commit-worker.ts runs only as a worker thread');
const { databaseUrl, settings } = workerData as { databaseUrl: string; settings: JudgeSettings };
nameThisThread('ca-commit');

try {
  const target = parseDatabaseUrl(databaseUrl);
  if (target.dialect !== 'sqlite') throw new Error('the commit thread is for SQLite files');
  // The schema must be the one these statements expect (the main thread migrated it).
  await (await openDatabase<CaSchema>(databaseUrl, { migrations: caMigrations, namespace: CA_NAMESPACE, readonly: true })).close();
  const connection = SqliteCommitConnection.open(target.path);
  const issuer = new Issuer(settings);
  // One group at a time, in order: the main thread sends the next only after this reply.
  let tail = Promise.resolve();
  port.on('message', (m: CommitThreadRequest | 'close') => {
    if (m === 'close') {
      tail = tail.then(() => connection.close()).then(() => port.close());
      return;
    }
    tail = tail.then(async () => {
      let reply: CommitThreadReply;
      try {
        reply = { id: m.id, result: toWire(await commitGroupSqlite(connection, issuer, m.judgements), m.judgements) };
      } catch (e) {
        reply = { id: m.id, error: e instanceof Error ? e.message : String(e) };
      }
      port.postMessage(reply);
    });
  });
  port.postMessage('ready');
} catch (e) {
  port.postMessage({ error: e instanceof Error ? e.message : String(e) });
}
