// One evidence request, judged and signed: the pipeline's verdict turned into the
// receipt the commit will try to store. Plain data in and out, so the same code runs on
// the main thread and in worker threads (verifier/pool.ts).
import type { LaunchClaims } from '../../protocol/messages.js';
import { Issuer, type IssuedReceipt, type IssuerOptions, type Refusal } from '../issuer/issuer.js';
import type { PolicySnapshot } from '../policy/snapshot.js';
import { MeasurementCache } from './measurements.js';
import { evidenceHash, judgeEvidence } from './pipeline.js';

/** What the commit needs to record a decision and, when there is one, store a receipt. */
export interface Judgement {
  /** Milliseconds since the epoch, when the evidence was judged. */
  readonly at: number;
  readonly evidenceHash: string;
  /** Absent only when the claims did not parse. */
  readonly claims?: LaunchClaims;
  /** Absent for affirming judgements. */
  readonly refusal?: Refusal;
  /** The allowlist entry and platform reference that matched (affirming only). */
  readonly allowlist?: string;
  readonly platform?: string;
  /** Signed, not yet stored (the nonce step decides). */
  readonly issued?: IssuedReceipt;
}

export type JudgeResult = { readonly kind: 'judged'; readonly judgement: Judgement } | { readonly kind: 'stale' } | { readonly kind: 'error'; readonly message: string };

export interface JudgeSettings extends IssuerOptions {
  readonly evidenceSkewSeconds: number;
}

export class EvidenceJudge {
  readonly #issuer: Issuer;
  readonly #skew: number;
  readonly #measurements = new MeasurementCache();
  #policy: PolicySnapshot;

  constructor(settings: JudgeSettings, policy: PolicySnapshot) {
    this.#issuer = new Issuer(settings);
    this.#skew = settings.evidenceSkewSeconds;
    this.#policy = policy;
  }

  get issuer(): Issuer {
    return this.#issuer;
  }

  setPolicy(policy: PolicySnapshot): void {
    if (policy.version >= this.#policy.version) this.#policy = policy;
  }

  judge(body: string, fresh: boolean, now = Date.now()): JudgeResult {
    try {
      const verdict = judgeEvidence(body, { policy: this.#policy, now, skewSeconds: this.#skew, fresh, measurements: this.#measurements });
      const hash = evidenceHash(body);
      switch (verdict.kind) {
        case 'stale':
          return { kind: 'stale' };
        case 'malformed':
          return { kind: 'judged', judgement: { at: now, evidenceHash: hash, refusal: verdict.refusal } };
        case 'refused':
          return {
            kind: 'judged',
            judgement: { at: now, evidenceHash: hash, claims: verdict.claims, refusal: verdict.refusal, issued: this.#issuer.contraindicate(verdict.claims, verdict.refusal, verdict.hostKey, now) },
          };
        case 'affirmed':
          return {
            kind: 'judged',
            judgement: {
              at: now,
              evidenceHash: hash,
              claims: verdict.claims,
              allowlist: verdict.entry.name,
              platform: verdict.platform,
              issued: this.#issuer.affirm(verdict.claims, verdict.hostKey, verdict.entry.name, now),
            },
          };
      }
    } catch (e) {
      return { kind: 'error', message: e instanceof Error ? e.message : String(e) };
    }
  }
}
