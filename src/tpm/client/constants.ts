// Constants only a TPM command client needs (Part 2: Structures): command codes, startup
// and session types, capabilities, the password-session handle, session and NV attribute
// bits. Algorithm ids, structure tags, hierarchy handles and handle types (TPM_HT) come
// from ../constants.ts.

/** TPM_CC (Part 2 §6.5.2): the commands this client sends. */
export const TPM_CC = {
  NV_UndefineSpace: 0x00000122,
  EvictControl: 0x00000120,
  CreatePrimary: 0x00000131,
  NV_DefineSpace: 0x0000012a,
  PCR_Reset: 0x0000013d,
  NV_Write: 0x00000137,
  NV_WriteLock: 0x00000138,
  Startup: 0x00000144,
  Shutdown: 0x00000145,
  ActivateCredential: 0x00000147,
  NV_Read: 0x0000014e,
  PolicySecret: 0x00000151,
  Create: 0x00000153,
  Load: 0x00000157,
  Quote: 0x00000158,
  FlushContext: 0x00000165,
  NV_ReadPublic: 0x00000169,
  ReadPublic: 0x00000173,
  StartAuthSession: 0x00000176,
  GetCapability: 0x0000017a,
  GetRandom: 0x0000017b,
  PCR_Read: 0x0000017e,
  PCR_Extend: 0x00000182,
  PolicyGetDigest: 0x00000189,
} as const;
export type TpmCc = (typeof TPM_CC)[keyof typeof TPM_CC];

const CC_NAMES = new Map<number, string>(Object.entries(TPM_CC).map(([k, v]) => [v, `TPM2_${k}`]));

/** "TPM2_Quote" for 0x158, "TPM_CC 0x…" otherwise (messages only). */
export function commandName(cc: number): string {
  return CC_NAMES.get(cc) ?? `TPM_CC 0x${cc.toString(16).padStart(8, '0')}`;
}

/** TPM_SU (Part 2 §6.5): TPM2_Startup / TPM2_Shutdown types. */
export const TPM_SU = {
  CLEAR: 0x0000,
  STATE: 0x0001,
} as const;

/** TPM_SE (Part 2 §6.11): session types. */
export const TPM_SE = {
  HMAC: 0x00,
  POLICY: 0x01,
  TRIAL: 0x03,
} as const;

/** TPM_CAP (Part 2 §6.12). */
export const TPM_CAP = {
  ALGS: 0x00000000,
  HANDLES: 0x00000001,
  COMMANDS: 0x00000002,
  PCRS: 0x00000005,
  TPM_PROPERTIES: 0x00000006,
} as const;

/** TPM_PT (Part 2 §6.13): the fixed properties this client reads. */
export const TPM_PT = {
  FAMILY_INDICATOR: 0x00000100,
  LEVEL: 0x00000101,
  REVISION: 0x00000102,
  MANUFACTURER: 0x00000105,
  VENDOR_STRING_1: 0x00000106,
  VENDOR_STRING_2: 0x00000107,
  VENDOR_STRING_3: 0x00000108,
  VENDOR_STRING_4: 0x00000109,
  FIRMWARE_VERSION_1: 0x0000010b,
  FIRMWARE_VERSION_2: 0x0000010c,
  HR_TRANSIENT_MIN: 0x0000010e,
  HR_PERSISTENT_MIN: 0x0000010f,
  NV_INDEX_MAX: 0x00000117,
  MAX_COMMAND_SIZE: 0x0000011e,
  MAX_RESPONSE_SIZE: 0x0000011f,
  MAX_DIGEST: 0x00000120,
  NV_BUFFER_MAX: 0x0000012c,
  /** TPM_PT_VAR: the first variable property. */
  PERMANENT: 0x00000200,
  HR_TRANSIENT_AVAIL: 0x00000207,
} as const;

/** TPM_RS_PW (Part 2 §7.4): the password authorization "session". */
export const TPM_RS_PW = 0x40000009;

/** TPMA_SESSION (Part 2 §8.4). */
export const TPMA_SESSION = {
  continueSession: 0x01,
  auditExclusive: 0x02,
  auditReset: 0x04,
  decrypt: 0x20,
  encrypt: 0x40,
  audit: 0x80,
} as const;

/** TPMA_NV (Part 2 §13.4): the bits this client sets or reads. TPM_NT occupies bits 7:4 (0 = ordinary). */
export const TPMA_NV = {
  PPWRITE: 1 << 0,
  OWNERWRITE: 1 << 1,
  AUTHWRITE: 1 << 2,
  POLICYWRITE: 1 << 3,
  POLICY_DELETE: 1 << 10,
  WRITELOCKED: 1 << 11,
  WRITEALL: 1 << 12,
  WRITEDEFINE: 1 << 13,
  WRITE_STCLEAR: 1 << 14,
  GLOBALLOCK: 1 << 15,
  PPREAD: 1 << 16,
  OWNERREAD: 1 << 17,
  AUTHREAD: 1 << 18,
  POLICYREAD: 1 << 19,
  NO_DA: 1 << 25,
  ORDERLY: 1 << 26,
  CLEAR_STCLEAR: 1 << 27,
  READLOCKED: 1 << 28,
  WRITTEN: 1 << 29,
  PLATFORMCREATE: 1 << 30,
  READ_STCLEAR: 2 ** 31,
} as const;

/** TPM2_PCR_Read answers at most this many digests per call (TPML_DIGEST holds 8, Part 2 §10.9.3). */
export const PCR_READ_MAX_DIGESTS = 8;

/** A command or response larger than this is refused before it is allocated (swtpm and PC Client TPMs use 4096). */
export const MAX_TPM_MESSAGE = 64 * 1024;

/** Every command and response starts with tag (2) ‖ size (4) ‖ code (4): Part 1 §18.2. */
export const HEADER_SIZE = 10;
