// JSON over HTTPS for the client, with every answer bounded before it is held: the manager
// is untrusted, and a CA address typed by hand may not be a CA. Error answers keep the
// server's code (src/http/client.ts errorFromResponse); an answer over the bound, or not
// JSON, is the service failing (UNAVAILABLE), never a crash.
import { request, type Dispatcher } from 'undici';
import { errorFromResponse } from '../http/client.js';
import { TrustlaunchError, type ErrorCode } from '../protocol/errors.js';

export interface JsonRequest {
  readonly dispatcher: Dispatcher;
  readonly url: URL;
  readonly method?: Dispatcher.HttpMethod;
  readonly token?: string;
  readonly body?: unknown;
  readonly timeoutMs: number;
  /** Largest answer body accepted, in bytes. */
  readonly maxBytes: number;
  readonly signal?: AbortSignal;
  /** Code when the service cannot be reached (default UNAVAILABLE). */
  readonly unreachableCode?: ErrorCode;
  /** Names the service in messages ("the manager", "the CA"). */
  readonly service: string;
}

/** The answer's JSON (undefined for an empty body); a TrustlaunchError for any failure. */
export async function requestJson(r: JsonRequest): Promise<unknown> {
  const method = r.method ?? 'GET';
  const headers: Record<string, string> = { accept: 'application/json' };
  if (r.token !== undefined) headers['authorization'] = `Bearer ${r.token}`;
  if (r.body !== undefined) headers['content-type'] = 'application/json';
  const what = `${method} ${r.url.pathname}`;
  let res: Dispatcher.ResponseData;
  try {
    res = await request(r.url, {
      method,
      headers,
      ...(r.body === undefined ? {} : { body: JSON.stringify(r.body) }),
      dispatcher: r.dispatcher,
      headersTimeout: r.timeoutMs,
      bodyTimeout: r.timeoutMs,
      ...(r.signal === undefined ? {} : { signal: r.signal }),
    });
  } catch (cause) {
    if (r.signal?.aborted === true) throw cause;
    throw new TrustlaunchError(r.unreachableCode ?? 'UNAVAILABLE', `${r.service} (${r.url.origin}) cannot be reached: ${(cause as Error).message}`, { cause });
  }
  const text = await readBounded(res.body, r.maxBytes, r.service, what);
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    if (res.statusCode >= 200 && res.statusCode < 300) throw new TrustlaunchError('UNAVAILABLE', `${r.service} answered ${what} with something that is not JSON`);
    json = undefined;
  }
  if (res.statusCode >= 200 && res.statusCode < 300) return json;
  throw errorFromResponse(res.statusCode, json, `${r.service}: ${what}`);
}

async function readBounded(body: Dispatcher.ResponseData['body'], maxBytes: number, service: string, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > maxBytes) {
      body.destroy();
      throw new TrustlaunchError('UNAVAILABLE', `${service} answered ${what} with more than ${maxBytes} bytes`);
    }
    chunks.push(buf);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new TrustlaunchError('UNAVAILABLE', `${service} answered ${what} with bytes that are not UTF-8`);
  }
}
