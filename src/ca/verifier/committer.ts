// Group commit of judgements (docs/ca.md "Storage"): requests that arrive while a commit
// is in flight wait and are committed together in the next one — one transaction and one
// fsync (SQLite) or WAL flush (PostgreSQL) for the whole group — and each request is
// answered only after the commit that holds its decision and receipt.
//
// Inside each commit, in order:
//   1. re-check the nodes and allowlist entries of affirming judgements: a revocation
//      committed by any CA process since the snapshot was taken turns them contraindicated;
//   2. the nonce step: a nonce gets at most one receipt across the whole CA (primary key;
//      INSERT … ON CONFLICT DO NOTHING tells which were stored). A judgement whose nonce
//      already had a receipt — from an earlier commit, another CA process, or earlier in
//      this group — is NONCE_REUSED (a refusal from a step before `nonce` keeps its code);
//      its freshly signed receipt is dropped and never seen;
//   3. every decision, in the append-only decisions table.
import { randomUUID } from 'node:crypto';
import type { ErrorCode } from '../../protocol/errors.js';
import { parseSshPublicKey } from '../../crypto/ssh-keys.js';
import { transaction, type DatabaseHandle } from '../../store/index.js';
import type { IssuedReceipt, Issuer, Refusal } from '../issuer/issuer.js';
import { inactiveNodes, revokedEntries } from '../store/policy.js';
import { insertDecisions, type DecisionRow } from '../store/decisions.js';
import { insertReceipts, type ReceiptRow } from '../store/receipts.js';
import type { CaSchema } from '../store/schema.js';
import type { Judgement } from './judge.js';
import { STEPS_AFTER_NONCE } from './pipeline.js';

export const RECEIPTS_CHANNEL = 'ca_receipts';
const MAX_GROUP = 512;

/** What became of a judgement once committed. */
export interface Decision {
  readonly outcome: 'affirming' | 'contraindicated' | 'refused';
  /** Set unless affirming. */
  readonly refusal?: Refusal;
  /** The receipt stored for this request's nonce by this request (absent when none was). */
  readonly stored?: IssuedReceipt;
}

interface Pending {
  judgement: Judgement;
  resolve: (d: Decision) => void;
  reject: (e: unknown) => void;
}

export interface CommitterOptions {
  readonly store: DatabaseHandle<CaSchema>;
  /** Re-issues receipts for judgements a revocation overtook. */
  readonly issuer: Issuer;
  readonly onError: (e: Error) => void;
}

export class DecisionCommitter {
  readonly #opts: CommitterOptions;
  #queue: Pending[] = [];
  #running: Promise<void> | undefined;
  /** Statistics for the benchmark and logs. */
  commits = 0;
  committed = 0;

  constructor(opts: CommitterOptions) {
    this.#opts = opts;
  }

  /** Resolves once the judgement's decision (and receipt, if stored) is durable. */
  submit(judgement: Judgement): Promise<Decision> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ judgement, resolve, reject });
      this.#running ??= this.#drain();
    });
  }

  /** Resolves when everything submitted so far is committed. */
  async idle(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0, MAX_GROUP);
        try {
          const decisions = await this.#commit(group.map((p) => p.judgement));
          this.commits++;
          this.committed += group.length;
          group.forEach((p, i) => p.resolve(decisions[i] as Decision));
        } catch (e) {
          for (const p of group) p.reject(e);
        }
      }
    } finally {
      this.#running = undefined;
    }
  }

  async #commit(judgements: readonly Judgement[]): Promise<Decision[]> {
    const { store, issuer } = this.#opts;
    const { decisions, stored } = await transaction(store.db, async (trx) => {
      const items = await this.#recheck(trx, judgements, issuer);
      // The nonce step. The first judgement of a nonce in this group is its candidate.
      const candidates: ReceiptRow[] = [];
      const seen = new Set<string>();
      for (const { judgement: j, issued } of items) {
        if (issued === undefined || j.claims === undefined || seen.has(j.claims.nonce)) continue;
        seen.add(j.claims.nonce);
        candidates.push({
          nonce: j.claims.nonce,
          jti: issued.jti,
          node_id: j.claims.nodeId,
          vm_id: j.claims.vmId,
          status: issued.status,
          receipt: issued.receipt,
          host_certificate: issued.hostCertificate ?? null,
          issued_at: issued.iat * 1000,
          expires_at: issued.exp * 1000,
        });
      }
      const stored = candidates.length === 0 ? new Set<string>() : await insertReceipts(trx, candidates);
      const storedJtis = new Set(candidates.filter((c) => stored.has(c.nonce)).map((c) => c.jti));
      const out = items.map(({ judgement: j, issued, refusal }) => decide(j, issued, refusal, issued !== undefined && storedJtis.has(issued.jti)));
      await insertDecisions(trx, out.map((d, i) => decisionRow((items[i] as Item).judgement, d)));
      return { decisions: out, stored };
    });
    await this.#publish([...stored]);
    return decisions;
  }

  /** Step 1: revocations that overtook the snapshot turn affirming judgements contraindicated. */
  async #recheck(trx: DatabaseHandle<CaSchema>['db'], judgements: readonly Judgement[], issuer: Issuer): Promise<Item[]> {
    const affirming = judgements.filter((j) => j.issued?.status === 'affirming' && j.claims !== undefined);
    const [revokedNodes, revokedNames] =
      affirming.length === 0
        ? [new Set<string>(), new Set<string>()]
        : [await inactiveNodes(trx, affirming.map((j) => (j.claims as NonNullable<Judgement['claims']>).nodeId)), await revokedEntries(trx, affirming.flatMap((j) => (j.allowlist === undefined ? [] : [j.allowlist])))];
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

  /** Wakes long-polls in every CA process: payloads are space-separated nonces. */
  async #publish(nonces: readonly string[]): Promise<void> {
    const perPayload = 180; // 44 bytes each, under the 7999-byte payload bound
    for (let i = 0; i < nonces.length; i += perPayload) {
      await this.#opts.store.notifier.publish(RECEIPTS_CHANNEL, nonces.slice(i, i + perPayload).join(' ')).catch((e: unknown) => this.#opts.onError(e as Error));
    }
  }
}

interface Item {
  readonly judgement: Judgement;
  readonly issued: IssuedReceipt | undefined;
  readonly refusal: Refusal | undefined;
}

function decide(j: Judgement, issued: IssuedReceipt | undefined, refusal: Refusal | undefined, stored: boolean): Decision {
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
    id: randomUUID(),
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
