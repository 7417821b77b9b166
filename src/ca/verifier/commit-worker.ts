// The SQLite commit thread (verifier/commit-thread.ts): opens its own connection and
// commits the groups it is sent; "ready" once open, then one reply per group.
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from '../../store/index.js';
import { Issuer } from '../issuer/issuer.js';
import { caMigrations, CA_NAMESPACE } from '../store/migrations.js';
import type { CaSchema } from '../store/schema.js';
import { commitGroup } from './commit-group.js';
import type { CommitThreadReply, CommitThreadRequest } from './commit-thread.js';
import type { JudgeSettings } from './judge.js';
import { nameThisThread } from '../threads.js';

const port = parentPort;
if (port === null) throw new Error('verifier/commit-worker.ts runs only as a worker thread');
const { databaseUrl, settings } = workerData as { databaseUrl: string; settings: JudgeSettings };
nameThisThread('ca-commit');

try {
  const store = await openDatabase<CaSchema>(databaseUrl, { migrations: caMigrations, namespace: CA_NAMESPACE, readonly: false });
  const issuer = new Issuer(settings);
  // One group at a time, in order: the main thread sends the next only after this reply.
  let tail = Promise.resolve();
  port.on('message', (m: CommitThreadRequest | 'close') => {
    if (m === 'close') {
      tail = tail.then(() => store.close()).then(() => port.close());
      return;
    }
    tail = tail.then(async () => {
      let reply: CommitThreadReply;
      try {
        reply = { id: m.id, result: await commitGroup(store.db, issuer, m.judgements) };
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
