// TPM 2.0 constants with the Library specification's names (Part 2: Structures).
// Only the values trustlaunch reads or writes; unknown values are parse errors, not guesses.

/** TPM_GENERATED_VALUE (Part 2 §6.2): the first four bytes of every structure the TPM itself signs. */
export const TPM_GENERATED_VALUE = 0xff544347;

/** TPM_ALG_ID (Part 2 §6.3). */
export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  MGF1: 0x0007,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  SM4: 0x0013,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECMQV: 0x001d,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CAMELLIA: 0x0026,
  SHA3_256: 0x0027,
  SHA3_384: 0x0028,
  SHA3_512: 0x0029,
  CTR: 0x0040,
  OFB: 0x0041,
  CBC: 0x0042,
  CFB: 0x0043,
  ECB: 0x0044,
} as const;
export type TpmAlgId = number;

const ALG_NAMES = new Map<number, string>(Object.entries(TPM_ALG).map(([k, v]) => [v, k]));

/** "SHA256" for 0x000b; "0x1234" for an unknown value (messages only). */
export function algName(alg: number): string {
  return ALG_NAMES.get(alg) ?? `0x${alg.toString(16).padStart(4, '0')}`;
}

/** TPMI_ALG_HASH (Part 2 §9.27) with digest sizes (TPMU_HA, Part 2 §10.3.1) and node:crypto names. */
export const HASH_ALGS: ReadonlyMap<number, { readonly size: number; readonly node: string }> = new Map([
  [TPM_ALG.SHA1, { size: 20, node: 'sha1' }],
  [TPM_ALG.SHA256, { size: 32, node: 'sha256' }],
  [TPM_ALG.SHA384, { size: 48, node: 'sha384' }],
  [TPM_ALG.SHA512, { size: 64, node: 'sha512' }],
  [TPM_ALG.SM3_256, { size: 32, node: 'sm3' }],
  [TPM_ALG.SHA3_256, { size: 32, node: 'sha3-256' }],
  [TPM_ALG.SHA3_384, { size: 48, node: 'sha3-384' }],
  [TPM_ALG.SHA3_512, { size: 64, node: 'sha3-512' }],
]);

export function isHashAlg(alg: number): boolean {
  return HASH_ALGS.has(alg);
}

/** TPM_ECC_CURVE (Part 2 §6.4) with coordinate sizes and node:crypto names where node has the curve. */
export const TPM_ECC_CURVE = {
  NIST_P192: 0x0001,
  NIST_P224: 0x0002,
  NIST_P256: 0x0003,
  NIST_P384: 0x0004,
  NIST_P521: 0x0005,
  BN_P256: 0x0010,
  BN_P638: 0x0011,
  SM2_P256: 0x0020,
} as const;

export const ECC_CURVES: ReadonlyMap<number, { readonly size: number; readonly node: string | undefined; readonly jwk: string | undefined }> = new Map([
  [TPM_ECC_CURVE.NIST_P192, { size: 24, node: 'prime192v1', jwk: undefined }],
  [TPM_ECC_CURVE.NIST_P224, { size: 28, node: 'secp224r1', jwk: undefined }],
  [TPM_ECC_CURVE.NIST_P256, { size: 32, node: 'prime256v1', jwk: 'P-256' }],
  [TPM_ECC_CURVE.NIST_P384, { size: 48, node: 'secp384r1', jwk: 'P-384' }],
  [TPM_ECC_CURVE.NIST_P521, { size: 66, node: 'secp521r1', jwk: 'P-521' }],
  [TPM_ECC_CURVE.BN_P256, { size: 32, node: undefined, jwk: undefined }],
  [TPM_ECC_CURVE.BN_P638, { size: 80, node: undefined, jwk: undefined }],
  [TPM_ECC_CURVE.SM2_P256, { size: 32, node: undefined, jwk: undefined }],
]);

/** TPM_ST (Part 2 §6.9): structure tags. */
export const TPM_ST = {
  RSP_COMMAND: 0x00c4,
  NULL: 0x8000,
  NO_SESSIONS: 0x8001,
  SESSIONS: 0x8002,
  ATTEST_NV: 0x8014,
  ATTEST_COMMAND_AUDIT: 0x8015,
  ATTEST_SESSION_AUDIT: 0x8016,
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  ATTEST_TIME: 0x8019,
  ATTEST_CREATION: 0x801a,
  ATTEST_NV_DIGEST: 0x801c,
  CREATION: 0x8021,
  VERIFIED: 0x8022,
  AUTH_SECRET: 0x8023,
  HASHCHECK: 0x8024,
  AUTH_SIGNED: 0x8025,
} as const;

/** Permanent handles (Part 2 §7.4, TPM_RH): their Name is the handle itself. */
export const TPM_RH = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  LOCKOUT: 0x4000000a,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
} as const;

/** TPM_HT (Part 2 §7.2): the handle type is the top byte. */
export const TPM_HT = {
  NV_INDEX: 0x01,
  HMAC_SESSION: 0x02,
  POLICY_SESSION: 0x03,
  TRANSIENT: 0x80,
  PERSISTENT: 0x81,
} as const;

// Implementation bounds (Part 2 §10 TPM2B definitions use these). Values of a PC Client
// TPM with RSA up to 4096 bits and ECC up to P-521, so any real TPM's output fits.
export const BOUNDS = {
  /** sizeof(TPMU_HA). */
  DIGEST: 64,
  /** sizeof(TPMT_HA): TPM2B_DATA. */
  DATA: 66,
  /** sizeof(TPMU_NAME): TPM2B_NAME. */
  NAME: 66,
  /** MAX_RSA_KEY_BYTES: TPM2B_PUBLIC_KEY_RSA. */
  RSA_KEY_BYTES: 512,
  /** MAX_ECC_KEY_BYTES: TPM2B_ECC_PARAMETER. */
  ECC_KEY_BYTES: 66,
  /** sizeof(TPMU_ENCRYPTED_SECRET): TPM2B_ENCRYPTED_SECRET. */
  ENCRYPTED_SECRET: 512,
  /** sizeof(TPMS_ID_OBJECT): TPM2B_ID_OBJECT. */
  ID_OBJECT: 2 + 64 + 2 + 64,
  /** MAX_NV_BUFFER_SIZE: TPM2B_MAX_NV_BUFFER. */
  NV_BUFFER: 1024,
  /** sizeof(TPMS_ATTEST) upper bound: TPM2B_ATTEST. */
  ATTEST: 2048,
  /** PCR_SELECT_MAX for IMPLEMENTATION_PCR = 24. */
  PCR_SELECT: 3,
  /** HASH_COUNT upper bound: entries of TPML_PCR_SELECTION / TPML_DIGEST_VALUES. */
  HASH_COUNT: 16,
} as const;
