// fast-check arbitraries for the TPM structures (shared by the property tests).
import fc from 'fast-check';
import { BOUNDS, ECC_CURVES, HASH_ALGS, TPM_ALG, TPM_ST } from '../../src/tpm/constants.js';
import type { TpmsAttest, TpmsClockInfo, TpmuAttest } from '../../src/tpm/structures/attest.js';
import type { TpmtHa } from '../../src/tpm/structures/ha.js';
import type { TpmlPcrSelection, TpmsPcrSelection } from '../../src/tpm/structures/pcr-selection.js';
import type { TpmsEccPoint, TpmtPublic, TpmtScheme, TpmtSymDefObject } from '../../src/tpm/structures/public.js';
import type { TpmtSignature } from '../../src/tpm/structures/signature.js';
import type { TpmsIdObject } from '../../src/tpm/structures/credential.js';

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = (max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength: max });

export const hashAlg = fc.constantFrom(...HASH_ALGS.keys());
export const digest = bytes(BOUNDS.DIGEST);
export const name = bytes(BOUNDS.NAME);

export const tpmtHa: fc.Arbitrary<TpmtHa> = fc.oneof(
  fc.constant({ hashAlg: TPM_ALG.NULL, digest: new Uint8Array(0) }),
  hashAlg.chain((h) => fc.uint8Array({ minLength: HASH_ALGS.get(h)?.size ?? 0, maxLength: HASH_ALGS.get(h)?.size ?? 0 }).map((d) => ({ hashAlg: h, digest: d }))),
);

export const pcrSelection: fc.Arbitrary<TpmsPcrSelection> = fc
  .record({ hash: hashAlg, sizeofSelect: fc.integer({ min: 0, max: BOUNDS.PCR_SELECT }) })
  .chain(({ hash, sizeofSelect }) =>
    fc.uniqueArray(fc.integer({ min: 0, max: Math.max(0, sizeofSelect * 8 - 1) }), { maxLength: sizeofSelect * 8 }).map((pcrs) => ({
      hash,
      sizeofSelect,
      pcrs: sizeofSelect === 0 ? [] : [...pcrs].sort((a, b) => a - b),
    })),
  );

export const pcrSelectionList: fc.Arbitrary<TpmlPcrSelection> = fc.array(pcrSelection, { maxLength: 4 });

export const clockInfo: fc.Arbitrary<TpmsClockInfo> = fc.record({ clock: u64, resetCount: u32, restartCount: u32, safe: fc.boolean() });

export const attested: fc.Arbitrary<TpmuAttest> = fc.oneof(
  fc.record({ kind: fc.constant('quote' as const), pcrSelect: pcrSelectionList, pcrDigest: digest }),
  fc.record({ kind: fc.constant('certify' as const), name, qualifiedName: name }),
  fc.record({ kind: fc.constant('creation' as const), objectName: name, creationHash: digest }),
  fc.record({ kind: fc.constant('commandAudit' as const), auditCounter: u64, digestAlg: hashAlg, auditDigest: digest, commandDigest: digest }),
  fc.record({ kind: fc.constant('sessionAudit' as const), exclusiveSession: fc.boolean(), sessionDigest: digest }),
  fc.record({ kind: fc.constant('time' as const), time: u64, clockInfo, firmwareVersion: u64 }),
  fc.record({ kind: fc.constant('nv' as const), indexName: name, offset: u16, nvContents: bytes(BOUNDS.NV_BUFFER) }),
  fc.record({ kind: fc.constant('nvDigest' as const), indexName: name, nvDigest: digest }),
);

const TYPE_OF: Record<TpmuAttest['kind'], number> = {
  quote: TPM_ST.ATTEST_QUOTE,
  certify: TPM_ST.ATTEST_CERTIFY,
  creation: TPM_ST.ATTEST_CREATION,
  commandAudit: TPM_ST.ATTEST_COMMAND_AUDIT,
  sessionAudit: TPM_ST.ATTEST_SESSION_AUDIT,
  time: TPM_ST.ATTEST_TIME,
  nv: TPM_ST.ATTEST_NV,
  nvDigest: TPM_ST.ATTEST_NV_DIGEST,
};

export const tpmsAttest: fc.Arbitrary<TpmsAttest> = fc
  .record({ magic: u32, qualifiedSigner: name, extraData: bytes(BOUNDS.DATA), clockInfo, firmwareVersion: u64, attested })
  .map((a) => ({ ...a, type: TYPE_OF[a.attested.kind] }));

const symDef: fc.Arbitrary<TpmtSymDefObject> = fc.oneof(
  fc.constant({ algorithm: TPM_ALG.NULL }),
  fc.record({
    algorithm: fc.constantFrom(TPM_ALG.AES, TPM_ALG.SM4, TPM_ALG.CAMELLIA),
    keyBits: u16,
    mode: fc.constantFrom(TPM_ALG.CFB, TPM_ALG.CBC, TPM_ALG.CTR, TPM_ALG.OFB, TPM_ALG.ECB, TPM_ALG.NULL),
  }),
);

const hashScheme = (schemes: number[]): fc.Arbitrary<TpmtScheme> => fc.record({ scheme: fc.constantFrom(...schemes), hashAlg });
const noScheme = (schemes: number[]): fc.Arbitrary<TpmtScheme> => fc.constantFrom(...schemes).map((scheme) => ({ scheme }));

const rsaScheme = fc.oneof(noScheme([TPM_ALG.NULL, TPM_ALG.RSAES]), hashScheme([TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.OAEP]));
const eccScheme = fc.oneof(
  noScheme([TPM_ALG.NULL]),
  hashScheme([TPM_ALG.ECDSA, TPM_ALG.SM2, TPM_ALG.ECSCHNORR, TPM_ALG.ECDH, TPM_ALG.ECMQV]),
  fc.record({ scheme: fc.constant(TPM_ALG.ECDAA), hashAlg, count: u16 }),
);
const kdfScheme = fc.oneof(noScheme([TPM_ALG.NULL]), hashScheme([TPM_ALG.MGF1, TPM_ALG.KDF1_SP800_56A, TPM_ALG.KDF2, TPM_ALG.KDF1_SP800_108]));
const keyedHashScheme = fc.oneof(
  noScheme([TPM_ALG.NULL]),
  hashScheme([TPM_ALG.HMAC]),
  fc.record({ scheme: fc.constant(TPM_ALG.XOR), hashAlg, kdf: fc.constantFrom(TPM_ALG.KDF1_SP800_56A, TPM_ALG.KDF2, TPM_ALG.KDF1_SP800_108, TPM_ALG.NULL) }),
);

export const eccPoint: fc.Arbitrary<TpmsEccPoint> = fc.record({ x: bytes(BOUNDS.ECC_KEY_BYTES), y: bytes(BOUNDS.ECC_KEY_BYTES) });

const base = fc.record({ nameAlg: fc.oneof(hashAlg, fc.constant(TPM_ALG.NULL)), objectAttributes: u32, authPolicy: digest });

export const tpmtPublic: fc.Arbitrary<TpmtPublic> = fc.oneof(
  fc.record({
    b: base,
    parameters: fc.record({ symmetric: symDef, scheme: rsaScheme, keyBits: u16, exponent: u32 }),
    unique: bytes(BOUNDS.RSA_KEY_BYTES),
  }).map(({ b, parameters, unique }): TpmtPublic => ({ type: TPM_ALG.RSA, ...b, parameters, unique })),
  fc.record({
    b: base,
    parameters: fc.record({ symmetric: symDef, scheme: eccScheme, curveID: fc.constantFrom(...ECC_CURVES.keys()), kdf: kdfScheme }),
    unique: eccPoint,
  }).map(({ b, parameters, unique }): TpmtPublic => ({ type: TPM_ALG.ECC, ...b, parameters, unique })),
  fc.record({ b: base, scheme: keyedHashScheme, unique: digest }).map(({ b, scheme, unique }): TpmtPublic => ({ type: TPM_ALG.KEYEDHASH, ...b, parameters: { scheme }, unique })),
  fc.record({ b: base, sym: symDef, unique: digest }).map(({ b, sym, unique }): TpmtPublic => ({ type: TPM_ALG.SYMCIPHER, ...b, parameters: { sym }, unique })),
);

export const tpmtSignature: fc.Arbitrary<TpmtSignature> = fc.oneof(
  fc.record({ sigAlg: fc.constantFrom(TPM_ALG.RSASSA, TPM_ALG.RSAPSS), hash: hashAlg, sig: bytes(BOUNDS.RSA_KEY_BYTES) }),
  fc.record({
    sigAlg: fc.constantFrom(TPM_ALG.ECDSA, TPM_ALG.ECDAA, TPM_ALG.SM2, TPM_ALG.ECSCHNORR),
    hash: hashAlg,
    signatureR: bytes(BOUNDS.ECC_KEY_BYTES),
    signatureS: bytes(BOUNDS.ECC_KEY_BYTES),
  }),
  tpmtHa.map((hmac): TpmtSignature => ({ sigAlg: TPM_ALG.HMAC, hmac })),
  fc.constant({ sigAlg: TPM_ALG.NULL }),
);

export const idObject: fc.Arbitrary<TpmsIdObject> = fc.record({
  integrityHMAC: digest,
  encIdentity: fc.uint8Array({ minLength: 2, maxLength: 2 + BOUNDS.DIGEST }),
});

/** Replaces every byte array by its hex so values from different constructors compare equal. */
export function norm(v: unknown): unknown {
  if (v instanceof Uint8Array) return `hex:${Buffer.from(v).toString('hex')}`;
  if (Array.isArray(v)) return v.map(norm);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}
