// What travels through the auth device's command and response buffers. The hypervisor
// mediates at the AuthDevice interface (the `pci-nvstore` backend is no TPM), so a
// command is one AuthDevice call and a response its result or error, as JSON with
// tagged byte strings and maps. The buffers are in mini-domain memory, so decoding is
// strict: bounded size and depth, a closed set of methods, no trailing bytes.
import { TrustlaunchError, isErrorCode, isTrustlaunchError } from '../../../protocol/errors.js';

export const AUTH_DEVICE_METHODS = [
  'powerOn',
  'powerOff',
  'endorsements',
  'ensureAttestationKey',
  'activateCredential',
  'quote',
  'pcrExtend',
  'pcrRead',
  'nvDefine',
  'nvWrite',
  'nvRead',
  'nvSize',
  'nvWriteLock',
  'nvUndefine',
] as const;
export type AuthDeviceMethod = (typeof AUTH_DEVICE_METHODS)[number];

export interface DeviceCall {
  readonly method: AuthDeviceMethod;
  readonly args: readonly unknown[];
}

export type DeviceReply = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: Error };

const MAX_DEPTH = 8;
const MAX_ARGS = 4;

type Wire = null | boolean | number | string | Wire[] | { [k: string]: Wire };

function toWire(v: unknown, depth: number): Wire {
  if (depth > MAX_DEPTH) throw new RangeError('value nested too deeply for the device mailbox');
  if (v === undefined) return { $u: 1 };
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RangeError('non-finite number in a device call');
    return v;
  }
  if (v instanceof Uint8Array) return { $b: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (v instanceof Map) return { $m: [...(v as Map<unknown, unknown>)].map(([k, x]) => [toWire(k, depth + 1), toWire(x, depth + 1)]) };
  if (Array.isArray(v)) return v.map((x) => toWire(x, depth + 1));
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, Wire> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k.startsWith('$')) throw new RangeError(`reserved key ${k} in a device call`);
      out[k] = toWire(x, depth + 1);
    }
    return out;
  }
  throw new RangeError(`a ${typeof v} cannot cross the device mailbox`);
}

function fromWire(w: unknown, depth: number): unknown {
  if (depth > MAX_DEPTH) throw malformed('nested too deeply');
  if (w === null || typeof w === 'boolean' || typeof w === 'string' || typeof w === 'number') return w;
  if (Array.isArray(w)) return w.map((x) => fromWire(x, depth + 1));
  if (typeof w !== 'object') throw malformed('unexpected value');
  const o = w as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && keys[0] === '$u' && o['$u'] === 1) return undefined;
  if (keys.length === 1 && keys[0] === '$b') {
    const b = o['$b'];
    if (typeof b !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(b)) throw malformed('bad byte string');
    return Buffer.from(b, 'base64');
  }
  if (keys.length === 1 && keys[0] === '$m') {
    const m = o['$m'];
    if (!Array.isArray(m) || !m.every((e) => Array.isArray(e) && e.length === 2)) throw malformed('bad map');
    return new Map((m as [unknown, unknown][]).map(([k, x]) => [fromWire(k, depth + 1), fromWire(x, depth + 1)]));
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    if (k.startsWith('$')) throw malformed(`reserved key ${k}`);
    out[k] = fromWire(o[k], depth + 1);
  }
  return out;
}

function malformed(why: string): TrustlaunchError {
  return new TrustlaunchError('MALFORMED_REQUEST', `device mailbox: ${why}`);
}

function parse(bytes: Uint8Array, maxBytes: number): unknown {
  if (bytes.length > maxBytes) throw malformed(`message of ${bytes.length} bytes exceeds ${maxBytes}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return JSON.parse(text) as unknown;
  } catch {
    throw malformed('not UTF-8 JSON');
  }
}

export function encodeCall(call: DeviceCall): Buffer {
  return Buffer.from(JSON.stringify({ m: call.method, a: toWire(call.args, 0) }), 'utf8');
}

export function decodeCall(bytes: Uint8Array, maxBytes: number): DeviceCall {
  const w = parse(bytes, maxBytes);
  if (typeof w !== 'object' || w === null || Array.isArray(w)) throw malformed('a call is an object');
  const o = w as Record<string, unknown>;
  if (Object.keys(o).length !== 2 || !AUTH_DEVICE_METHODS.includes(o['m'] as AuthDeviceMethod) || !Array.isArray(o['a']) || o['a'].length > MAX_ARGS) {
    throw malformed('a call is {m: <AuthDevice method>, a: [at most 4 arguments]}');
  }
  return { method: o['m'] as AuthDeviceMethod, args: fromWire(o['a'], 0) as unknown[] };
}

/** Errors keep their code (TrustlaunchError) or their class (a caller's TypeError/RangeError). */
export function encodeReply(reply: DeviceReply): Buffer {
  if (reply.ok) return Buffer.from(JSON.stringify({ r: toWire(reply.value, 0) }), 'utf8');
  const e = reply.error;
  const wire = isTrustlaunchError(e)
    ? { code: e.code, message: e.message }
    : { class: e instanceof TypeError ? 'TypeError' : e instanceof RangeError ? 'RangeError' : 'Error', message: e.message };
  return Buffer.from(JSON.stringify({ e: wire }), 'utf8');
}

export function decodeReply(bytes: Uint8Array, maxBytes: number): DeviceReply {
  const w = parse(bytes, maxBytes);
  if (typeof w !== 'object' || w === null || Array.isArray(w) || Object.keys(w).length !== 1) throw malformed('a reply is {r} or {e}');
  const o = w as Record<string, unknown>;
  if ('r' in o) return { ok: true, value: fromWire(o['r'], 0) };
  const e = o['e'] as Record<string, unknown> | undefined;
  const message = typeof e?.['message'] === 'string' ? e['message'] : 'device error';
  if (typeof e?.['code'] === 'string') {
    return { ok: false, error: isErrorCode(e['code']) ? new TrustlaunchError(e['code'], message) : new TrustlaunchError('INTERNAL', message) };
  }
  const cls = e?.['class'];
  return { ok: false, error: cls === 'TypeError' ? new TypeError(message) : cls === 'RangeError' ? new RangeError(message) : new TrustlaunchError('INTERNAL', message) };
}
