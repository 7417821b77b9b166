// The manager's user API as the client sees it: untrusted by design. Answers are bounded
// and parsed into the few fields the client uses (unknown fields are dropped, never read):
// the VM id it was given, the nonce the manager says it forwarded, the state and the SSH
// endpoint as hints. None of it can make a VM trusted — only the CA's receipt does.
import { Agent, type Dispatcher } from 'undici';
import { z } from 'zod';
import { TrustlaunchError } from '../protocol/errors.js';
import { IdSchema, describeIssues, type VmCreateRequest } from '../protocol/messages.js';
import { requestJson } from './http.js';

export interface ManagerConnection {
  readonly url: string;
  /** The user's API token (a secret: only ever in the Authorization header). */
  readonly token: string;
  /** PEM of the CA the manager's TLS certificate chains to; undefined: the system roots. */
  readonly ca: string | undefined;
}

const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
const TIMEOUT_MS = 30_000;
const MAX_CONNECTIONS = 8;

const short = (max: number) => z.string().max(max);

/** A VM as the manager reports it (z.object: extra fields are stripped, not trusted or used). */
export const ManagerVmSchema = z.object({
  vmId: IdSchema,
  name: short(63),
  state: short(32),
  hostname: short(253),
  nonce: short(64),
  image: z.object({ ref: short(256), digest: short(80) }).optional(),
  node: short(63).nullable().optional(),
  reason: z.object({ code: short(64), message: short(1024) }).nullable().optional(),
  nodeReport: z
    .object({
      state: short(32).optional(),
      attestation: short(32).optional(),
      ssh: z.object({ host: short(253), port: z.number().int().min(1).max(65535) }).optional(),
    })
    .nullable()
    .optional(),
  createdAt: short(64).optional(),
});
export type ManagerVm = z.infer<typeof ManagerVmSchema>;

export class ManagerApi {
  readonly url: string;
  readonly #token: string;
  readonly #agent: Dispatcher;

  constructor(conn: ManagerConnection) {
    let origin: URL;
    try {
      origin = new URL(conn.url);
    } catch {
      throw new TrustlaunchError('MALFORMED_REQUEST', `the manager URL is not a URL: ${JSON.stringify(conn.url.slice(0, 100))}`);
    }
    if (origin.protocol !== 'https:') throw new TrustlaunchError('MALFORMED_REQUEST', 'the manager URL must be https://');
    this.url = origin.origin;
    this.#token = conn.token;
    // A few kept-alive connections, reused: many launches at once queue their requests
    // instead of opening (and TLS-handshaking) one connection each.
    this.#agent = new Agent({ connect: conn.ca === undefined ? {} : { ca: [conn.ca], rejectUnauthorized: true }, keepAliveTimeout: 10_000, connections: MAX_CONNECTIONS });
  }

  async #call(method: Dispatcher.HttpMethod, path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
    return requestJson({
      dispatcher: this.#agent,
      url: new URL(path, this.url),
      method,
      token: this.#token,
      ...(body === undefined ? {} : { body }),
      timeoutMs: TIMEOUT_MS,
      maxBytes: MAX_ANSWER_BYTES,
      service: 'the manager',
      ...(signal === undefined ? {} : { signal }),
    });
  }

  async createVm(request: VmCreateRequest): Promise<ManagerVm> {
    return parseVm(await this.#call('POST', '/v1/vms', request));
  }

  async getVm(ref: string, signal?: AbortSignal): Promise<ManagerVm> {
    return parseVm(await this.#call('GET', `/v1/vms/${encodeURIComponent(checkRef(ref))}`, undefined, signal));
  }

  async listVms(): Promise<ManagerVm[]> {
    const parsed = z.object({ vms: z.array(z.unknown()).max(10_000) }).safeParse(await this.#call('GET', '/v1/vms'));
    if (!parsed.success) throw invalid(describeIssues(parsed.error));
    return parsed.data.vms.map(parseVm);
  }

  async deleteVm(ref: string): Promise<void> {
    await this.#call('DELETE', `/v1/vms/${encodeURIComponent(checkRef(ref))}`);
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

function parseVm(json: unknown): ManagerVm {
  const parsed = ManagerVmSchema.safeParse(json);
  if (!parsed.success) throw invalid(describeIssues(parsed.error));
  return parsed.data;
}

function invalid(why: string): TrustlaunchError {
  return new TrustlaunchError('UNAVAILABLE', `the manager's answer does not match its schema: ${why}`);
}

/** A VM id or name, as the manager's routes take it. */
function checkRef(ref: string): string {
  if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(ref)) throw new TrustlaunchError('MALFORMED_REQUEST', `not a VM name or id: ${JSON.stringify(ref.slice(0, 80))}`);
  return ref;
}
