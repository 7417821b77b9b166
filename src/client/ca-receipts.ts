// Receipts come from the CA, never from the manager (DESIGN.md §4.2 step 8): by the nonce
// this client chose, over TLS pinned to the CA's root, long-polling
// (`GET /v1/receipts/{nonce}?wait=S`, at most 60 s a request) until an overall deadline.
// The answer is only bytes until the verification pipeline (verify.ts) has judged them.
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { MAX_RECEIPT_CHARS } from '../crypto/receipts.js';
import { pinnedCaAgent } from '../crypto/tls.js';
import { isTrustlaunchError, TrustlaunchError } from '../protocol/errors.js';
import { describeIssues } from '../protocol/messages.js';
import type { Nonce } from '../protocol/nonce.js';
import { requestJson } from './http.js';
import type { TrustedCa } from './pinned-ca.js';

/** The CA's long-poll limit per request (src/ca/receipts/waiters.ts MAX_WAIT_SECONDS). */
const MAX_WAIT_SECONDS = 60;
const MAX_ANSWER_BYTES = 64 * 1024;

const ReceiptAnswerSchema = z.strictObject({
  receipt: z.string().max(MAX_RECEIPT_CHARS),
  hostCertificate: z.string().max(8192).optional(),
});

/** What the CA holds for a nonce: the signed receipt, and for an affirming one the VM's host certificate. */
export interface CaReceipt {
  readonly receipt: string;
  readonly hostCertificate: string | undefined;
}

export class CaReceipts {
  readonly #ca: TrustedCa;
  readonly #agent: Dispatcher;
  readonly #owned: boolean;

  /** Pass `agent` to share one pinned connection pool between clients (benchmarks). */
  constructor(ca: TrustedCa, agent?: Dispatcher) {
    this.#ca = ca;
    this.#owned = agent === undefined;
    this.#agent = agent ?? pinnedCaAgent({ ca: ca.tlsRoot });
  }

  /** The receipt for `nonce`, waiting up to `waitSeconds` (0..60) for it; undefined when the CA has none by then. */
  async lookup(nonce: Nonce, waitSeconds: number, signal?: AbortSignal): Promise<CaReceipt | undefined> {
    const wait = Math.max(0, Math.min(MAX_WAIT_SECONDS, Math.floor(waitSeconds)));
    const url = new URL(`/v1/receipts/${encodeURIComponent(nonce)}`, this.#ca.url);
    url.searchParams.set('wait', String(wait));
    let json: unknown;
    try {
      json = await requestJson({
        dispatcher: this.#agent,
        url,
        timeoutMs: (wait + 15) * 1000,
        maxBytes: MAX_ANSWER_BYTES,
        unreachableCode: 'CA_UNREACHABLE',
        service: 'the CA',
        ...(signal === undefined ? {} : { signal }),
      });
    } catch (e) {
      if (isTrustlaunchError(e, 'NOT_FOUND')) return undefined;
      throw e;
    }
    const parsed = ReceiptAnswerSchema.safeParse(json);
    if (!parsed.success) throw new TrustlaunchError('RECEIPT_MALFORMED', `the CA's receipt answer: ${describeIssues(parsed.error)}`, { detail: { step: 'parse' } });
    return { receipt: parsed.data.receipt, hostCertificate: parsed.data.hostCertificate };
  }

  /**
   * Long-polls until the receipt exists, `deadline` (ms since the epoch) passes (undefined),
   * or `signal` aborts (undefined). A CA that is briefly unreachable is asked again.
   */
  async waitFor(nonce: Nonce, deadline: number, signal?: AbortSignal): Promise<CaReceipt | undefined> {
    let failures = 0;
    const aborted = (): boolean => signal?.aborted === true;
    while (!aborted()) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      const started = Date.now();
      try {
        const found = await this.lookup(nonce, Math.min(MAX_WAIT_SECONDS, Math.ceil(left / 1000)), signal);
        if (found !== undefined) return found;
        failures = 0;
        // A CA that answers "none" at once (too many waiters) is not asked in a tight loop.
        if (Date.now() - started < 100) await sleep(100);
      } catch (e) {
        if (aborted()) return undefined;
        if (!isTrustlaunchError(e, 'CA_UNREACHABLE') || ++failures > 5) throw e;
        await sleep(Math.min(200 * 2 ** failures, 2000, Math.max(0, deadline - Date.now())));
      }
    }
    return undefined;
  }

  async close(): Promise<void> {
    if (this.#owned) await this.#agent.close();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
