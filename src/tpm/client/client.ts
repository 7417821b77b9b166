// The TPM 2.0 command client: marshals a command, sends it through a transport (which
// queues: one command in flight), retries the warnings after which the same command may
// succeed (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING; bounded attempts and delay), and
// parses the response into a value or a typed error. The command functions in commands/
// build on `run`.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Authorization } from './authorization.js';
import { marshalCommand, parseResponse, responseCodeOf, type TpmCommand } from './command.js';
import { RETRYABLE, decodeResponseCode } from './response-code.js';
import type { TpmTransport } from './transport.js';

export interface RetryPolicy {
  /** Total sends of one command, the first included. */
  readonly attempts: number;
  /** Delay before the first resend; doubled each time up to `maxDelayMs`. */
  readonly delayMs: number;
  readonly maxDelayMs: number;
}

export interface TpmClientOptions {
  /** Per-command timeout (default 60 s: RSA key generation on a slow hardware TPM takes tens of seconds). */
  readonly timeoutMs?: number;
  readonly retry?: RetryPolicy;
}

export interface RunOptions {
  readonly timeoutMs?: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 20, delayMs: 2, maxDelayMs: 500 };

export class TpmClient {
  readonly transport: TpmTransport;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy;
  /** Resends after a retryable warning, since creation (tests and benchmarks read it). */
  retries = 0;

  constructor(transport: TpmTransport, options: TpmClientOptions = {}) {
    this.transport = transport;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.retry = options.retry ?? DEFAULT_RETRY;
    if (!(this.retry.attempts >= 1 && this.retry.attempts <= 100)) throw new RangeError('retry.attempts must be 1..100');
  }

  get description(): string {
    return this.transport.description;
  }

  /** Sends `cmd` and returns what its response parser read. */
  async run<T>(cmd: TpmCommand<T>, options: RunOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const bytes = marshalCommand(cmd);
    let delay = this.retry.delayMs;
    for (let attempt = 1; ; attempt++) {
      const response = await this.transport.transmit(bytes, timeoutMs);
      const rc = decodeResponseCode(responseCodeOf(response));
      if (RETRYABLE.has(rc.base) && attempt < this.retry.attempts) {
        this.retries++;
        await sleep(delay);
        delay = Math.min(delay * 2, this.retry.maxDelayMs);
        continue;
      }
      const parsed = parseResponse(cmd, response);
      updateNonces(cmd.authorizations ?? [], parsed.sessions.map((s) => s.nonceTPM));
      return parsed.value;
    }
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}

/** Policy sessions remember the TPM's latest nonce. */
function updateNonces(auths: readonly Authorization[], nonces: readonly Uint8Array[]): void {
  auths.forEach((a, i) => {
    const n = nonces[i];
    if (a.kind === 'policy' && n !== undefined) a.session.nonceTPM = n;
  });
}
