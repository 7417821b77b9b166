// One TPM command as data, and the two halves of its wire form (Part 1 §18):
//   command  = tag ‖ commandSize ‖ commandCode ‖ handles ‖ [authorizationSize ‖ auths] ‖ parameters
//   response = tag ‖ responseSize ‖ responseCode ‖ handles ‖ [parameterSize] ‖ parameters ‖ [auths]
// The response is untrusted bytes: every field is bounded, the session count must match
// the command's, and the parameter reader must be consumed exactly (no trailing bytes).
import { TPM_ST } from '../constants.js';
import { TpmReader } from '../marshal/reader.js';
import { TpmWriter } from '../marshal/writer.js';
import { readAuthResponse, writeAuthCommand, type Authorization, type AuthResponse } from './authorization.js';
import { commandName } from './constants.js';
import { TpmResponseError } from './errors.js';

export interface TpmCommand<T> {
  readonly code: number;
  /** The handle area, in the order of the command's table in Part 3. */
  readonly handles?: readonly number[];
  /** One per handle with an "Auth Index" in Part 3, in that order (at most 3). */
  readonly authorizations?: readonly Authorization[];
  /** Writes the parameter area. */
  readonly parameters?: (w: TpmWriter) => void;
  /** How many handles the response's handle area holds (0 or 1). */
  readonly responseHandles?: number;
  /** Reads the response parameter area (which must be consumed exactly). */
  readonly response?: (r: TpmReader, handles: readonly number[]) => T;
}

export interface ParsedResponse<T> {
  readonly value: T;
  readonly handles: readonly number[];
  readonly sessions: readonly AuthResponse[];
}

export function marshalCommand(cmd: TpmCommand<unknown>): Buffer {
  const auths = cmd.authorizations ?? [];
  if (auths.length > 3) throw new RangeError('a command carries at most 3 authorizations');
  const w = new TpmWriter(64);
  w.u16(auths.length > 0 ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS).u32(0).u32(cmd.code);
  for (const h of cmd.handles ?? []) w.u32(h >>> 0, 'handle');
  if (auths.length > 0) {
    w.sized32Block((x) => {
      for (const a of auths) writeAuthCommand(x, a);
    });
  }
  cmd.parameters?.(w);
  w.patchU32(2, w.length);
  return w.finish();
}

/** The response code in a framed response (the transport checked the framing). */
export function responseCodeOf(response: Uint8Array): number {
  return Buffer.from(response.buffer, response.byteOffset, response.byteLength).readUInt32BE(6);
}

/** Parses a response to `cmd`: a TpmResponseError for an error code, TPM_PARSE_ERROR for malformed bytes. */
export function parseResponse<T>(cmd: TpmCommand<T>, response: Uint8Array): ParsedResponse<T> {
  const r = new TpmReader(response, { what: `${commandName(cmd.code)} response` });
  const tag = r.u16('tag');
  const size = r.u32('responseSize');
  const rc = r.u32('responseCode');
  if (size !== response.length) r.fail('responseSize', `says ${size}, got ${response.length} bytes`);
  if (rc !== 0) throw new TpmResponseError(cmd.code, rc);
  const sessionCount = cmd.authorizations?.length ?? 0;
  const expectedTag = sessionCount > 0 ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS;
  if (tag !== expectedTag) r.fail('tag', `0x${tag.toString(16)} where 0x${expectedTag.toString(16)} was due`);
  const handles: number[] = [];
  for (let i = 0; i < (cmd.responseHandles ?? 0); i++) handles.push(r.u32(`handle[${i}]`));
  let params: TpmReader;
  if (sessionCount > 0) {
    const parameterSize = r.u32('parameterSize');
    if (parameterSize > r.remaining) r.fail('parameterSize', `${parameterSize} exceeds the ${r.remaining} bytes left`);
    params = r.sub(parameterSize, 'parameters');
  } else {
    params = r.sub(r.remaining, 'parameters');
  }
  const value = cmd.response === undefined ? (undefined as T) : cmd.response(params, handles);
  params.end();
  const sessions: AuthResponse[] = [];
  for (let i = 0; i < sessionCount; i++) sessions.push(readAuthResponse(r, `sessions[${i}]`));
  r.end();
  return { value, handles, sessions };
}
