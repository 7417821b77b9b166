// Parts of a receipt's cost, each alone on one thread of the bench process, with nothing
// else competing for it:
// - what any CA that stores its receipts durably must spend beyond TLS, HTTP and the crypto
//   (the ceiling of bench/ca.ts): JSON.parse of a real evidence body, and the least durable
//   store — a bare receipt row and decision row (primary keys only, no triggers or checks)
//   in SQLite WAL with synchronous=FULL, committed in groups of 32. A lower bound for the
//   gap between the ceiling and the goal;
// - the CA's own judge (src/ca/verifier/judge.ts: the pipeline, the receipt and the host
//   certificate) against the crypto alone in the same thread: what the pipeline adds.
import Database from 'better-sqlite3';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { EvidenceJudge } from '../../src/ca/verifier/judge.js';
import { buildSnapshot } from '../../src/ca/policy/snapshot.js';
import type { PlatformReference } from '../../src/ca/policy/platform.js';
import type { Digest } from '../../src/protocol/digest.js';
import { receiptCrypto } from './receipt-crypto.js';

export interface LeastCosts {
  /** CPU-µs to JSON.parse one evidence body. */
  readonly parseMicros: number;
  /** CPU-µs per receipt of the least durable store. */
  readonly storeMicros: number;
}

/** Rows per transaction: about what the CA's group commit gathers at 64 connections. */
const GROUP = 32;

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** CPU-µs per call of `fn`, best of `rounds` rounds of `n` calls (the least other work interferes). */
function perCall(rounds: number, n: number, fn: () => void): number {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = cpuMicros();
    for (let i = 0; i < n; i++) fn();
    best = Math.min(best, (cpuMicros() - t0) / n);
  }
  return best;
}

export function leastCosts(dir: string, evidenceBody: string): LeastCosts {
  const parseMicros = perCall(5, 20_000, () => {
    JSON.parse(evidenceBody);
  });

  const db = new Database(join(dir, 'least-store.db'));
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE receipts (nonce TEXT PRIMARY KEY, jti TEXT NOT NULL, receipt TEXT NOT NULL, host_certificate TEXT); CREATE TABLE decisions (id INTEGER PRIMARY KEY, nonce TEXT NOT NULL, outcome TEXT NOT NULL, at INTEGER NOT NULL)');
    const receipt = db.prepare('INSERT INTO receipts VALUES (?, ?, ?, ?)');
    const decision = db.prepare('INSERT INTO decisions (nonce, outcome, at) VALUES (?, ?, ?)');
    // Row sizes of an affirming receipt in the benchmark (receipt JWT, certificate line).
    const rows = Array.from({ length: 4 * 8192 }, () => ({ nonce: randomBytes(32).toString('base64url'), jti: randomBytes(16).toString('base64url'), receipt: randomBytes(720).toString('base64url'), certificate: randomBytes(396).toString('base64') }));
    const commit = db.transaction((from: number) => {
      for (let i = from; i < from + GROUP; i++) {
        const row = rows[i] as (typeof rows)[number];
        receipt.run(row.nonce, row.jti, row.receipt, row.certificate);
        decision.run(row.nonce, 'affirming', Date.now());
      }
    });
    let next = 0; // every row is inserted once: 4 rounds of a quarter of them
    const storeMicros =
      perCall(4, rows.length / GROUP / 4, () => {
        commit(next);
        next += GROUP;
      }) / GROUP;
    return { parseMicros, storeMicros };
  } finally {
    db.close();
  }
}

export interface JudgeAlone {
  /** CPU-µs per evidence of EvidenceJudge.judge (affirming: pipeline, receipt, certificate). */
  readonly judgeMicros: number;
  /** CPU-µs per receipt of the crypto alone (bench/ca/receipt-crypto.ts) in the same thread. */
  readonly cryptoMicros: number;
}

/** The judge of a CA that knows one active node, its platform and the kernel, alone on this thread. */
export function judgeAlone(evidenceBody: string, node: { id: string; akPublic: Uint8Array; platform: PlatformReference; kernel: Digest }): JudgeAlone {
  const receiptKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const sshCaKey = generateKeyPairSync('ed25519').privateKey;
  const policy = buildSnapshot(1, [{ id: node.id, status: 'active', akPublic: node.akPublic }], [{ name: 'bench', kernel: node.kernel, createdAt: Date.now() }], [node.platform]);
  const judge = new EvidenceJudge({ issuer: 'https://ca.bench.test', receiptKey, receiptKeyId: 'bench', sshCaKey, receiptLifetimeSeconds: 3600, evidenceSkewSeconds: 300 }, policy);
  const first = judge.judge(evidenceBody, true);
  if (first.kind !== 'judged' || first.judgement.issued?.status !== 'affirming') throw new Error(`the sample evidence is not affirmed: ${JSON.stringify(first).slice(0, 300)}`);

  const crypto = receiptCrypto();
  // Alternating rounds, so both sides see the same machine.
  let judgeMicros = Infinity;
  let cryptoMicros = Infinity;
  for (let round = 0; round < 5; round++) {
    judgeMicros = Math.min(judgeMicros, perCall(1, 2000, () => void judge.judge(evidenceBody, true)));
    cryptoMicros = Math.min(cryptoMicros, perCall(1, 2000, crypto));
  }
  return { judgeMicros, cryptoMicros };
}
