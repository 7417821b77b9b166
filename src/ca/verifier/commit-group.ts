// One group commit (verifier/committer.ts groups the requests): a single transaction that
//   1. re-checks the nodes and allowlist entries of affirming judgements: a revocation
//      committed by any CA process since the policy snapshot was taken turns them
//      contraindicated (re-signed here);
//   2. runs the nonce step: a nonce gets at most one receipt across the whole CA (primary
//      key; INSERT … ON CONFLICT DO NOTHING tells which were stored). A judgement whose
//      nonce already had a receipt — from an earlier commit, another CA process, or
//      earlier in this group — is NONCE_REUSED (a refusal from a step before `nonce` keeps
//      its code); its freshly signed receipt is dropped and never seen;
//   3. records every decision in the append-only decisions table.
// Plain data in and out: it runs on the main thread through Kysely, or in the SQLite
// commit thread on its own connection (store/sqlite-commit.ts).
import type { Kysely } from 'kysely';
import type { ErrorCode } from '../../protocol/errors.js';
import type { LaunchClaims } from '../../protocol/messages.js';
import { parseSshPublicKey } from '../../crypto/ssh-keys.js';
import { transaction } from '../../store/index.js';
import type { IssuedReceipt, Issuer, Refusal } from '../issuer/issuer.js';
import { inactiveNodes, revokedEntries } from '../store/policy.js';
import { decisionId, insertDecisions, type DecisionRow } from '../store/decisions.js';
import { insertReceipts, type ReceiptRow } from '../store/receipts.js';
import type { CaSchema } from '../store/schema.js';
import type { GroupStatements, SqliteCommitConnection } from '../store/sqlite-commit.js';
import type { Judgement } from './judge.js';
import { STEPS_AFTER_NONCE } from './pipeline.js';

/** What became of a judgement once committed. */
export interface Decision {
  readonly outcome: 'affirming' | 'contraindicated' | 'refused';
  /** Set unless affirming. */
  readonly refusal?: Refusal;
  /** The receipt stored for this request's nonce by this request (absent when none was). */
  readonly stored?: IssuedReceipt;
}

export interface GroupResult {
  /** One per judgement, in order. */
  readonly decisions: Decision[];
  /** Nonces that got their receipt in this commit. */
  readonly stored: string[];
}

interface Item {
  readonly judgement: Judgement;
  readonly issued: IssuedReceipt | undefined;
  readonly refusal: Refusal | undefined;
}

export async function commitGroup(db: Kysely<CaSchema>, issuer: Issuer, judgements: readonly Judgement[]): Promise<GroupResult> {
  return transaction(db, (trx) => runGroup(kyselyStatements(trx), issuer, judgements));
}

/** The same group commit on the SQLite commit thread's connection (statements prepared once). */
export async function commitGroupSqlite(connection: SqliteCommitConnection, issuer: Issuer, judgements: readonly Judgement[]): Promise<GroupResult> {
  return connection.transaction(() => runGroup(connection, issuer, judgements));
}

function kyselyStatements(trx: Kysely<CaSchema>): GroupStatements {
  return {
    inactiveNodes: (ids) => inactiveNodes(trx, ids),
    revokedEntries: (names) => revokedEntries(trx, names),
    insertReceipts: (rows) => insertReceipts(trx, rows),
    insertDecisions: (rows) => insertDecisions(trx, rows),
  };
}

/** Steps 1–3, inside the caller's transaction. */
async function runGroup(db: GroupStatements, issuer: Issuer, judgements: readonly Judgement[]): Promise<GroupResult> {
  const items = await recheck(db, issuer, judgements);
  // The nonce step. The first judgement of a nonce in this group is its candidate.
  const candidates: ReceiptRow[] = [];
  const seen = new Set<string>();
  for (const { judgement: j, issued } of items) {
    if (issued === undefined || j.claims === undefined || seen.has(j.claims.nonce)) continue;
    seen.add(j.claims.nonce);
    candidates.push(receiptRow(j.claims, issued));
  }
  const stored = candidates.length === 0 ? new Set<string>() : await db.insertReceipts(candidates);
  const storedJtis = new Set(candidates.filter((c) => stored.has(c.nonce)).map((c) => c.jti));
  const decisions = items.map((it) => decide(it, it.issued !== undefined && storedJtis.has(it.issued.jti)));
  await db.insertDecisions(decisions.map((d, i) => decisionRow((items[i] as Item).judgement, d)));
  return { decisions, stored: [...stored] };
}

/** Step 1: revocations that overtook the snapshot turn affirming judgements contraindicated. */
async function recheck(db: GroupStatements, issuer: Issuer, judgements: readonly Judgement[]): Promise<Item[]> {
  const affirming = judgements.flatMap((j) => (j.issued?.status === 'affirming' && j.claims !== undefined ? [{ claims: j.claims, allowlist: j.allowlist }] : []));
  const revokedNodes = affirming.length === 0 ? new Set<string>() : await db.inactiveNodes(affirming.map((a) => a.claims.nodeId));
  const revokedNames = affirming.length === 0 ? new Set<string>() : await db.revokedEntries(affirming.flatMap((a) => (a.allowlist === undefined ? [] : [a.allowlist])));
  return judgements.map((judgement) => {
    const claims = judgement.claims;
    if (judgement.issued?.status !== 'affirming' || claims === undefined) return { judgement, issued: judgement.issued, refusal: judgement.refusal };
    let refusal: Refusal | undefined;
    if (revokedNodes.has(claims.nodeId)) refusal = { step: 'node', code: 'NODE_REVOKED' satisfies ErrorCode, message: `node ${claims.nodeId} has been revoked` };
    else if (judgement.allowlist !== undefined && revokedNames.has(judgement.allowlist)) {
      refusal = { step: 'kernel', code: 'KERNEL_REVOKED' satisfies ErrorCode, message: `allowlist entry ${judgement.allowlist} for kernel ${claims.kernel} was revoked` };
    }
    if (refusal === undefined) return { judgement, issued: judgement.issued, refusal: undefined };
    const key = parseSshPublicKey(claims.sshHostKey);
    return { judgement, refusal, issued: issuer.contraindicate(claims, refusal, { type: key.type, blob: key.blob }, Date.now()) };
  });
}

function receiptRow(claims: LaunchClaims, issued: IssuedReceipt): ReceiptRow {
  return {
    nonce: claims.nonce,
    jti: issued.jti,
    node_id: claims.nodeId,
    vm_id: claims.vmId,
    status: issued.status,
    receipt: issued.receipt,
    host_certificate: issued.hostCertificate ?? null,
    issued_at: issued.iat * 1000,
    expires_at: issued.exp * 1000,
  };
}

function decide({ judgement: j, issued, refusal }: Item, stored: boolean): Decision {
  if (stored && issued !== undefined) {
    return issued.status === 'affirming' ? { outcome: 'affirming', stored: issued } : { outcome: 'contraindicated', refusal: refusal as Refusal, stored: issued };
  }
  if (issued === undefined || j.claims === undefined) return { outcome: 'refused', refusal: refusal as Refusal };
  // The nonce already had a receipt: NONCE_REUSED, unless an earlier step had refused.
  const replay: Refusal = { step: 'nonce', code: 'NONCE_REUSED', message: `nonce ${j.claims.nonce} already has a receipt; it is left as it was` };
  if (refusal === undefined || STEPS_AFTER_NONCE.has(refusal.step)) return { outcome: 'refused', refusal: replay };
  return { outcome: 'refused', refusal: { ...refusal, message: `${refusal.message} (no receipt stored: the nonce already has one)`.slice(0, 512) } };
}

function decisionRow(j: Judgement, d: Decision): DecisionRow {
  return {
    id: decisionId(j.at),
    at: j.at,
    kind: 'evidence',
    outcome: d.outcome,
    node_id: j.claims?.nodeId ?? null,
    vm_id: j.claims?.vmId ?? null,
    nonce: j.claims?.nonce ?? null,
    step: d.refusal?.step ?? null,
    code: d.refusal?.code ?? null,
    message: d.refusal?.message ?? null,
    evidence_hash: j.evidenceHash,
    receipt_jti: d.stored?.jti ?? null,
  };
}
