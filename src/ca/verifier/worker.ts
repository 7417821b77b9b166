// A judge thread: receives policy snapshots and evidence bodies, answers judgements.
// Started by verifier/pool.ts; the first message it sends is "ready".
import { parentPort, workerData } from 'node:worker_threads';
import { EvidenceJudge, type JudgeSettings } from './judge.js';
import type { PolicySnapshot } from '../policy/snapshot.js';
import type { ToWorker, FromWorker } from './pool.js';
import { nameThisThread } from '../threads.js';

const port = parentPort;
if (port === null) throw new Error('verifier/worker.ts runs only as a worker thread');
const { settings, policy } = workerData as { settings: JudgeSettings; policy: PolicySnapshot };
const judge = new EvidenceJudge(settings, policy);
nameThisThread('ca-judge');

port.on('message', (m: ToWorker) => {
  if (m.type === 'policy') {
    judge.setPolicy(m.policy);
    return;
  }
  const reply: FromWorker = { results: m.jobs.map((j) => ({ id: j.id, result: judge.judge(j.body, j.fresh) })) };
  port.postMessage(reply);
});
port.postMessage('ready');
