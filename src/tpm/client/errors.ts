// The client's typed failures. A TPM that answered with an error response code gives a
// TpmResponseError carrying the decoded code (spec name, handle/session/parameter number)
// and the command; a transport that failed, closed or sent bytes that are not a TPM
// response gives TPM_TRANSPORT_ERROR; no answer in time gives TPM_TIMEOUT.
import { TrustlaunchError } from '../../protocol/errors.js';
import { commandName } from './constants.js';
import { decodeResponseCode, describeResponseCode, type DecodedResponseCode } from './response-code.js';

export class TpmResponseError extends TrustlaunchError {
  /** The decoded response code. */
  readonly rc: DecodedResponseCode;
  /** The command code that failed. */
  readonly command: number;

  constructor(command: number, rc: number) {
    const decoded = decodeResponseCode(rc);
    super('TPM_RESPONSE_ERROR', `${commandName(command)} failed: ${describeResponseCode(decoded)}`, {
      detail: {
        command: commandName(command),
        rc: decoded.rc,
        name: decoded.name,
        ...(decoded.handle === undefined ? {} : { handle: decoded.handle }),
        ...(decoded.session === undefined ? {} : { session: decoded.session }),
        ...(decoded.parameter === undefined ? {} : { parameter: decoded.parameter }),
      },
    });
    this.name = 'TpmResponseError';
    this.rc = decoded;
    this.command = command;
  }

  /** True when the base code is `base` (one of RC.*), whatever handle/session/parameter it names. */
  is(base: number): boolean {
    return this.rc.base === base;
  }
}

export function isTpmResponseError(e: unknown, base?: number): e is TpmResponseError {
  return e instanceof TpmResponseError && (base === undefined || e.rc.base === base);
}

export function transportError(message: string, cause?: unknown): TrustlaunchError {
  return new TrustlaunchError('TPM_TRANSPORT_ERROR', message, cause === undefined ? undefined : { cause });
}

export function timeoutError(what: string, ms: number): TrustlaunchError {
  return new TrustlaunchError('TPM_TIMEOUT', `${what}: no answer within ${ms} ms`, { detail: { timeoutMs: ms } });
}

/** A response that parses but says something impossible (a PCR that was not asked for, a capability not requested). */
export function malformedResponse(message: string): TrustlaunchError {
  return new TrustlaunchError('TPM_PARSE_ERROR', message);
}
