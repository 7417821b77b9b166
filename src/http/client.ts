// JSON-over-HTTPS client used by every party (node → CA, manager → dom0, CLI → CA and
// manager). Errors come back as TrustlaunchError with the server's code, so a caller
// tells a policy refusal from an unreachable service.
import { Agent, request, type Dispatcher } from 'undici';
import { ERROR_CODES, isErrorCode, TrustlaunchError, type ErrorCode } from '../protocol/errors.js';

export interface JsonClientOptions {
  /** e.g. https://127.0.0.1:8443 */
  readonly baseUrl: string;
  /** PEM CA certificate(s) the server's chain must lead to; nothing else is trusted. */
  readonly ca?: string | readonly string[];
  /** A ready dispatcher instead of `ca` (e.g. a pinned agent shared by several clients). */
  readonly dispatcher?: Dispatcher;
  /** Bearer token, sent in the Authorization header. */
  readonly token?: string;
  /** Per-request timeout (default 30 s). */
  readonly timeoutMs?: number;
  /** Code used when the server cannot be reached (default UNAVAILABLE). */
  readonly unreachableCode?: ErrorCode;
}

export interface RequestOptions {
  readonly body?: unknown;
  /** Raw bytes or a stream body with its content type (e.g. image uploads). */
  readonly raw?: { readonly body: Uint8Array | NodeJS.ReadableStream; readonly contentType: string; readonly length?: number };
  readonly query?: Readonly<Record<string, string | number | undefined>>;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  readonly headers?: Readonly<Record<string, string>>;
}

export class JsonClient {
  readonly baseUrl: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;

  constructor(private readonly opts: JsonClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    if (opts.dispatcher !== undefined) {
      this.dispatcher = opts.dispatcher;
      this.ownsDispatcher = false;
    } else {
      const ca = opts.ca === undefined ? undefined : typeof opts.ca === 'string' ? [opts.ca] : [...opts.ca];
      this.dispatcher = new Agent({
        connect: ca === undefined ? {} : { ca, rejectUnauthorized: true },
        keepAliveTimeout: 10_000,
      });
      this.ownsDispatcher = true;
    }
  }

  async call<T = unknown>(method: Dispatcher.HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (this.opts.token !== undefined) headers['authorization'] = `Bearer ${this.opts.token}`;
    let body: string | Uint8Array | NodeJS.ReadableStream | undefined;
    if (options.raw !== undefined) {
      headers['content-type'] = options.raw.contentType;
      if (options.raw.length !== undefined) headers['content-length'] = String(options.raw.length);
      body = options.raw.body;
    } else if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const timeout = options.timeoutMs ?? this.opts.timeoutMs ?? 30_000;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body: body as string | Uint8Array }),
        dispatcher: this.dispatcher,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
    } catch (cause) {
      const code = this.opts.unreachableCode ?? 'UNAVAILABLE';
      throw new TrustlaunchError(code, `${method} ${url.origin}${url.pathname}: ${(cause as Error).message}`, { cause });
    }
    const text = await res.body.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return json as T;
    throw errorFromResponse(res.statusCode, json, `${method} ${url.pathname}`);
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }
}

/** Turns an error response into a TrustlaunchError, keeping the server's code when it is one of ours. */
export function errorFromResponse(status: number, json: unknown, what: string): TrustlaunchError {
  const err = (json as { error?: { code?: unknown; message?: unknown; detail?: unknown } } | undefined)?.error;
  const message = typeof err?.message === 'string' ? err.message : `HTTP ${status}`;
  const detail = typeof err?.detail === 'object' && err.detail !== null ? (err.detail as Record<string, unknown>) : undefined;
  if (isErrorCode(err?.code)) {
    return new TrustlaunchError(err.code, message, detail === undefined ? undefined : { detail });
  }
  const byStatus = (Object.keys(ERROR_CODES) as ErrorCode[]).find((c) => ERROR_CODES[c].status === status && ERROR_CODES[c].kind !== 'malformed');
  const code: ErrorCode = status === 400 ? 'MALFORMED_REQUEST' : status === 401 ? 'UNAUTHENTICATED' : status === 403 ? 'FORBIDDEN' : status === 404 ? 'NOT_FOUND' : status >= 500 ? 'UNAVAILABLE' : (byStatus ?? 'INTERNAL');
  return new TrustlaunchError(code, `${what}: ${message}`);
}
