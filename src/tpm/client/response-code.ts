// TPM_RC decoding (Part 2 §6.6): a response code is format-zero (bit 7 clear: a TPM 2.0
// error or warning in bits 6:0 when bit 8 "V" is set, vendor-defined when bit 10 "T" is
// set, a warning when bit 11 "S" is set) or format-one (bit 7 set: error number in bits
// 5:0, and in bits 11:8 the number of the parameter (bit 6 "P" set), the session (bit 11
// set) or the handle it concerns). Names are the specification's.

const RC_VER1 = 0x100;
const RC_FMT1 = 0x080;
const RC_WARN = 0x900;

/** Format-zero errors (Part 2 Table 16, RC_VER1 + n). */
const VER1_NAMES: ReadonlyMap<number, string> = new Map([
  [0x000, 'TPM_RC_INITIALIZE'],
  [0x001, 'TPM_RC_FAILURE'],
  [0x003, 'TPM_RC_SEQUENCE'],
  [0x00b, 'TPM_RC_PRIVATE'],
  [0x019, 'TPM_RC_HMAC'],
  [0x020, 'TPM_RC_DISABLED'],
  [0x021, 'TPM_RC_EXCLUSIVE'],
  [0x024, 'TPM_RC_AUTH_TYPE'],
  [0x025, 'TPM_RC_AUTH_MISSING'],
  [0x026, 'TPM_RC_POLICY'],
  [0x027, 'TPM_RC_PCR'],
  [0x028, 'TPM_RC_PCR_CHANGED'],
  [0x02d, 'TPM_RC_UPGRADE'],
  [0x02e, 'TPM_RC_TOO_MANY_CONTEXTS'],
  [0x02f, 'TPM_RC_AUTH_UNAVAILABLE'],
  [0x030, 'TPM_RC_REBOOT'],
  [0x031, 'TPM_RC_UNBALANCED'],
  [0x042, 'TPM_RC_COMMAND_SIZE'],
  [0x043, 'TPM_RC_COMMAND_CODE'],
  [0x044, 'TPM_RC_AUTHSIZE'],
  [0x045, 'TPM_RC_AUTH_CONTEXT'],
  [0x046, 'TPM_RC_NV_RANGE'],
  [0x047, 'TPM_RC_NV_SIZE'],
  [0x048, 'TPM_RC_NV_LOCKED'],
  [0x049, 'TPM_RC_NV_AUTHORIZATION'],
  [0x04a, 'TPM_RC_NV_UNINITIALIZED'],
  [0x04b, 'TPM_RC_NV_SPACE'],
  [0x04c, 'TPM_RC_NV_DEFINED'],
  [0x050, 'TPM_RC_BAD_CONTEXT'],
  [0x051, 'TPM_RC_CPHASH'],
  [0x052, 'TPM_RC_PARENT'],
  [0x053, 'TPM_RC_NEEDS_TEST'],
  [0x054, 'TPM_RC_NO_RESULT'],
  [0x055, 'TPM_RC_SENSITIVE'],
]);

/** Format-zero warnings (Part 2 Table 16, RC_WARN + n). */
const WARN_NAMES: ReadonlyMap<number, string> = new Map([
  [0x001, 'TPM_RC_CONTEXT_GAP'],
  [0x002, 'TPM_RC_OBJECT_MEMORY'],
  [0x003, 'TPM_RC_SESSION_MEMORY'],
  [0x004, 'TPM_RC_MEMORY'],
  [0x005, 'TPM_RC_SESSION_HANDLES'],
  [0x006, 'TPM_RC_OBJECT_HANDLES'],
  [0x007, 'TPM_RC_LOCALITY'],
  [0x008, 'TPM_RC_YIELDED'],
  [0x009, 'TPM_RC_CANCELED'],
  [0x00a, 'TPM_RC_TESTING'],
  ...[0, 1, 2, 3, 4, 5, 6].map((i): [number, string] => [0x010 + i, `TPM_RC_REFERENCE_H${i}`]),
  ...[0, 1, 2, 3, 4, 5, 6].map((i): [number, string] => [0x018 + i, `TPM_RC_REFERENCE_S${i}`]),
  [0x020, 'TPM_RC_NV_RATE'],
  [0x021, 'TPM_RC_LOCKOUT'],
  [0x022, 'TPM_RC_RETRY'],
  [0x023, 'TPM_RC_NV_UNAVAILABLE'],
  [0x07f, 'TPM_RC_NOT_USED'],
]);

/** Format-one errors (Part 2 Table 16, RC_FMT1 + n). */
const FMT1_NAMES: ReadonlyMap<number, string> = new Map([
  [0x001, 'TPM_RC_ASYMMETRIC'],
  [0x002, 'TPM_RC_ATTRIBUTES'],
  [0x003, 'TPM_RC_HASH'],
  [0x004, 'TPM_RC_VALUE'],
  [0x005, 'TPM_RC_HIERARCHY'],
  [0x007, 'TPM_RC_KEY_SIZE'],
  [0x008, 'TPM_RC_MGF'],
  [0x009, 'TPM_RC_MODE'],
  [0x00a, 'TPM_RC_TYPE'],
  [0x00b, 'TPM_RC_HANDLE'],
  [0x00c, 'TPM_RC_KDF'],
  [0x00d, 'TPM_RC_RANGE'],
  [0x00e, 'TPM_RC_AUTH_FAIL'],
  [0x00f, 'TPM_RC_NONCE'],
  [0x010, 'TPM_RC_PP'],
  [0x012, 'TPM_RC_SCHEME'],
  [0x015, 'TPM_RC_SIZE'],
  [0x016, 'TPM_RC_SYMMETRIC'],
  [0x017, 'TPM_RC_TAG'],
  [0x018, 'TPM_RC_SELECTOR'],
  [0x01a, 'TPM_RC_INSUFFICIENT'],
  [0x01b, 'TPM_RC_SIGNATURE'],
  [0x01c, 'TPM_RC_KEY'],
  [0x01d, 'TPM_RC_POLICY_FAIL'],
  [0x01f, 'TPM_RC_INTEGRITY'],
  [0x020, 'TPM_RC_TICKET'],
  [0x021, 'TPM_RC_RESERVED_BITS'],
  [0x022, 'TPM_RC_BAD_AUTH'],
  [0x023, 'TPM_RC_EXPIRED'],
  [0x024, 'TPM_RC_POLICY_CC'],
  [0x025, 'TPM_RC_BINDING'],
  [0x026, 'TPM_RC_CURVE'],
  [0x027, 'TPM_RC_ECC_POINT'],
  [0x028, 'TPM_RC_FW_LIMITED'],
  [0x029, 'TPM_RC_SVN_LIMITED'],
]);

/** TPM_RC_BAD_TAG (Part 2 Table 16): defined for TPM 1.2 compatibility, outside RC_VER1. */
const TPM_RC_BAD_TAG = 0x01e;

export type ResponseCodeFormat = 'success' | 'format-zero' | 'format-one' | 'vendor' | 'tpm12' | 'not-tpm';

/** What a response code says, decoded once. */
export interface DecodedResponseCode {
  readonly rc: number;
  /** The spec name of the base code (e.g. "TPM_RC_AUTH_FAIL"), or "TPM_RC_0x…" when the TPM sent an unassigned one. */
  readonly name: string;
  readonly format: ResponseCodeFormat;
  /** Format-zero warnings (S bit): the command did not run and may succeed later. */
  readonly warning: boolean;
  /** The base code without handle/session/parameter bits (RC_FMT1 + n, RC_VER1 + n, RC_WARN + n). */
  readonly base: number;
  /** Format-one: which handle (1–7), session (1–7) or parameter (1–15) it concerns; absent when 0 or format-zero. */
  readonly handle?: number;
  readonly session?: number;
  readonly parameter?: number;
}

const hex = (n: number, width: number): string => `0x${n.toString(16).padStart(width, '0')}`;

/** Decodes any 32-bit value; never throws (a TPM that sends nonsense still gets a readable message). */
export function decodeResponseCode(rc: number): DecodedResponseCode {
  const value = rc >>> 0;
  if (value === 0) return { rc: 0, name: 'TPM_RC_SUCCESS', format: 'success', warning: false, base: 0 };
  // Bits 31:12 are never set by a TPM (TSS layers use them).
  if (value > 0xfff) return { rc: value, name: `not a TPM response code ${hex(value, 8)}`, format: 'not-tpm', warning: false, base: value };
  if ((value & RC_FMT1) !== 0) return decodeFormatOne(value);
  return decodeFormatZero(value);
}

function decodeFormatOne(rc: number): DecodedResponseCode {
  const e = rc & 0x3f;
  const base = RC_FMT1 + e;
  const name = FMT1_NAMES.get(e) ?? `TPM_RC_${hex(base, 3)}`;
  const common = { rc, name, format: 'format-one' as const, warning: false, base };
  if ((rc & 0x040) !== 0) {
    const n = (rc >> 8) & 0xf;
    return n === 0 ? common : { ...common, parameter: n };
  }
  const n = (rc >> 8) & 0x7;
  if (n === 0) return common;
  return (rc & 0x800) !== 0 ? { ...common, session: n } : { ...common, handle: n };
}

function decodeFormatZero(rc: number): DecodedResponseCode {
  const e = rc & 0x7f;
  if ((rc & 0x100) === 0) {
    // V clear: a TPM 1.2 code; TPM 2.0 uses only TPM_RC_BAD_TAG from that range.
    const name = rc === TPM_RC_BAD_TAG ? 'TPM_RC_BAD_TAG' : `TPM 1.2 return code ${hex(rc, 3)}`;
    return { rc, name, format: 'tpm12', warning: false, base: rc };
  }
  if ((rc & 0x400) !== 0) return { rc, name: `vendor-defined ${hex(rc, 3)}`, format: 'vendor', warning: (rc & 0x800) !== 0, base: rc };
  if ((rc & 0x800) !== 0) {
    const base = RC_WARN + e;
    return { rc, name: WARN_NAMES.get(e) ?? `TPM_RC_${hex(base, 3)}`, format: 'format-zero', warning: true, base };
  }
  const base = RC_VER1 + e;
  // Bit 9 is reserved in format zero; keep it in rc, decode the rest.
  return { rc, name: VER1_NAMES.get(e) ?? `TPM_RC_${hex(base, 3)}`, format: 'format-zero', warning: false, base };
}

/** "TPM_RC_AUTH_FAIL (0x98e, session 1)" */
export function describeResponseCode(d: DecodedResponseCode): string {
  const where = d.handle !== undefined ? `, handle ${d.handle}` : d.session !== undefined ? `, session ${d.session}` : d.parameter !== undefined ? `, parameter ${d.parameter}` : '';
  return `${d.name} (${hex(d.rc, 3)}${where})`;
}

/** Base codes by spec name, for callers that test what went wrong (`err.rc.name === RC.NV_DEFINED` reads worse). */
export const RC = {
  SUCCESS: 0x000,
  INITIALIZE: RC_VER1 + 0x000,
  FAILURE: RC_VER1 + 0x001,
  AUTH_MISSING: RC_VER1 + 0x025,
  AUTH_UNAVAILABLE: RC_VER1 + 0x02f,
  NV_RANGE: RC_VER1 + 0x046,
  NV_SIZE: RC_VER1 + 0x047,
  NV_LOCKED: RC_VER1 + 0x048,
  NV_AUTHORIZATION: RC_VER1 + 0x049,
  NV_UNINITIALIZED: RC_VER1 + 0x04a,
  NV_SPACE: RC_VER1 + 0x04b,
  NV_DEFINED: RC_VER1 + 0x04c,
  ATTRIBUTES: RC_FMT1 + 0x002,
  VALUE: RC_FMT1 + 0x004,
  HANDLE: RC_FMT1 + 0x00b,
  AUTH_FAIL: RC_FMT1 + 0x00e,
  SIZE: RC_FMT1 + 0x015,
  BAD_AUTH: RC_FMT1 + 0x022,
  POLICY_FAIL: RC_FMT1 + 0x01d,
  INTEGRITY: RC_FMT1 + 0x01f,
  ECC_POINT: RC_FMT1 + 0x027,
  OBJECT_MEMORY: RC_WARN + 0x002,
  SESSION_MEMORY: RC_WARN + 0x003,
  LOCALITY: RC_WARN + 0x007,
  YIELDED: RC_WARN + 0x008,
  TESTING: RC_WARN + 0x00a,
  REFERENCE_H0: RC_WARN + 0x010,
  LOCKOUT: RC_WARN + 0x021,
  RETRY: RC_WARN + 0x022,
} as const;

/** Warnings after which the same command, sent again unchanged, may succeed (Part 2 §6.6.3). */
export const RETRYABLE: ReadonlySet<number> = new Set([RC.RETRY, RC.YIELDED, RC.TESTING]);
