// TPMT_PUBLIC (Part 2 §12.2.4) and TPM2B_PUBLIC (§12.2.5) with the parameter structures
// they select: TPMS_RSA_PARMS (§12.2.3.5), TPMS_ECC_PARMS (§12.2.3.6), TPMS_KEYEDHASH_PARMS
// (§12.2.3.3), TPMS_SYMCIPHER_PARMS (§12.2.3.4), TPMT_SYM_DEF_OBJECT (§11.1.7), the scheme
// unions (§11.2) and TPMS_ECC_POINT (§11.2.5.2).
import { ECC_CURVES, TPM_ALG, algName } from '../constants.js';
import { parseWhole, type TpmReader } from '../marshal/reader.js';
import { TpmWriter } from '../marshal/writer.js';
import { readHashAlg } from './ha.js';
import { Tpm2bDigest, Tpm2bEccParameter, Tpm2bPublicKeyRsa } from './sized.js';

/** TPMT_SYM_DEF_OBJECT (Part 2 §11.1.7): NULL, or a block cipher with key size and mode. */
export type TpmtSymDefObject =
  | { readonly algorithm: typeof TPM_ALG.NULL }
  | { readonly algorithm: number; readonly keyBits: number; readonly mode: number };

/**
 * A scheme (TPMT_RSA_SCHEME §11.2.4.2, TPMT_ECC_SCHEME §11.2.5.5, TPMT_KDF_SCHEME §11.2.3.3,
 * TPMT_KEYEDHASH_SCHEME §11.1.23): the selector and whichever details it carries.
 */
export interface TpmtScheme {
  readonly scheme: number;
  /** TPMS_SCHEME_HASH.hashAlg (every scheme but NULL and RSAES). */
  readonly hashAlg?: number;
  /** TPMS_SCHEME_ECDAA.count. */
  readonly count?: number;
  /** TPMS_SCHEME_XOR.kdf. */
  readonly kdf?: number;
}

/** TPMS_RSA_PARMS (Part 2 §12.2.3.5). */
export interface TpmsRsaParms {
  readonly symmetric: TpmtSymDefObject;
  readonly scheme: TpmtScheme;
  readonly keyBits: number;
  /** 0 means the default 65537. */
  readonly exponent: number;
}

/** TPMS_ECC_PARMS (Part 2 §12.2.3.6). */
export interface TpmsEccParms {
  readonly symmetric: TpmtSymDefObject;
  readonly scheme: TpmtScheme;
  readonly curveID: number;
  readonly kdf: TpmtScheme;
}

/** TPMS_ECC_POINT (Part 2 §11.2.5.2). */
export interface TpmsEccPoint {
  readonly x: Uint8Array;
  readonly y: Uint8Array;
}

interface PublicBase {
  readonly nameAlg: number;
  /** TPMA_OBJECT bits (structures/object-attributes.ts). */
  readonly objectAttributes: number;
  readonly authPolicy: Uint8Array;
}

export interface TpmtPublicRsa extends PublicBase {
  readonly type: typeof TPM_ALG.RSA;
  readonly parameters: TpmsRsaParms;
  /** TPM2B_PUBLIC_KEY_RSA: the modulus n, big-endian. */
  readonly unique: Uint8Array;
}
export interface TpmtPublicEcc extends PublicBase {
  readonly type: typeof TPM_ALG.ECC;
  readonly parameters: TpmsEccParms;
  readonly unique: TpmsEccPoint;
}
export interface TpmtPublicKeyedHash extends PublicBase {
  readonly type: typeof TPM_ALG.KEYEDHASH;
  /** TPMS_KEYEDHASH_PARMS: its scheme. */
  readonly parameters: { readonly scheme: TpmtScheme };
  readonly unique: Uint8Array;
}
export interface TpmtPublicSymCipher extends PublicBase {
  readonly type: typeof TPM_ALG.SYMCIPHER;
  /** TPMS_SYMCIPHER_PARMS: its symmetric definition. */
  readonly parameters: { readonly sym: TpmtSymDefObject };
  readonly unique: Uint8Array;
}

export type TpmtPublic = TpmtPublicRsa | TpmtPublicEcc | TpmtPublicKeyedHash | TpmtPublicSymCipher;

// --- symmetric definition ---------------------------------------------------------

const SYM_OBJECT_ALGS = new Set<number>([TPM_ALG.AES, TPM_ALG.SM4, TPM_ALG.CAMELLIA]);
const SYM_MODES = new Set<number>([TPM_ALG.CTR, TPM_ALG.OFB, TPM_ALG.CBC, TPM_ALG.CFB, TPM_ALG.ECB, TPM_ALG.NULL]);

export function readTpmtSymDefObject(r: TpmReader, field: string): TpmtSymDefObject {
  const algorithm = r.u16(`${field}.algorithm`);
  if (algorithm === TPM_ALG.NULL) return { algorithm: TPM_ALG.NULL };
  if (!SYM_OBJECT_ALGS.has(algorithm)) r.fail(`${field}.algorithm`, `${algName(algorithm)} is not a TPMI_ALG_SYM_OBJECT`);
  const keyBits = r.u16(`${field}.keyBits`);
  const mode = r.u16(`${field}.mode`);
  if (!SYM_MODES.has(mode)) r.fail(`${field}.mode`, `${algName(mode)} is not a TPMI_ALG_SYM_MODE`);
  return { algorithm, keyBits, mode };
}

export function writeTpmtSymDefObject(w: TpmWriter, s: TpmtSymDefObject): void {
  w.u16(s.algorithm);
  if ('keyBits' in s) w.u16(s.keyBits).u16(s.mode);
}

// --- schemes ------------------------------------------------------------------------

type Details = 'none' | 'hash' | 'ecdaa' | 'xor';

const RSA_SCHEMES: ReadonlyMap<number, Details> = new Map([
  [TPM_ALG.NULL, 'none'],
  [TPM_ALG.RSAES, 'none'],
  [TPM_ALG.RSASSA, 'hash'],
  [TPM_ALG.RSAPSS, 'hash'],
  [TPM_ALG.OAEP, 'hash'],
]);
const ECC_SCHEMES: ReadonlyMap<number, Details> = new Map([
  [TPM_ALG.NULL, 'none'],
  [TPM_ALG.ECDSA, 'hash'],
  [TPM_ALG.ECDAA, 'ecdaa'],
  [TPM_ALG.SM2, 'hash'],
  [TPM_ALG.ECSCHNORR, 'hash'],
  [TPM_ALG.ECDH, 'hash'],
  [TPM_ALG.ECMQV, 'hash'],
]);
const KDF_SCHEMES: ReadonlyMap<number, Details> = new Map([
  [TPM_ALG.NULL, 'none'],
  [TPM_ALG.MGF1, 'hash'],
  [TPM_ALG.KDF1_SP800_56A, 'hash'],
  [TPM_ALG.KDF2, 'hash'],
  [TPM_ALG.KDF1_SP800_108, 'hash'],
]);
const KEYEDHASH_SCHEMES: ReadonlyMap<number, Details> = new Map([
  [TPM_ALG.NULL, 'none'],
  [TPM_ALG.HMAC, 'hash'],
  [TPM_ALG.XOR, 'xor'],
]);
const XOR_KDFS = new Set<number>([TPM_ALG.KDF1_SP800_56A, TPM_ALG.KDF2, TPM_ALG.KDF1_SP800_108, TPM_ALG.NULL]);

function readScheme(r: TpmReader, field: string, table: ReadonlyMap<number, Details>): TpmtScheme {
  const scheme = r.u16(`${field}.scheme`);
  const details = table.get(scheme);
  switch (details) {
    case undefined:
      return r.fail(`${field}.scheme`, `${algName(scheme)} is not allowed here`);
    case 'none':
      return { scheme };
    case 'hash':
      return { scheme, hashAlg: readHashAlg(r, `${field}.details.hashAlg`) };
    case 'ecdaa':
      return { scheme, hashAlg: readHashAlg(r, `${field}.details.hashAlg`), count: r.u16(`${field}.details.count`) };
    case 'xor': {
      const hashAlg = readHashAlg(r, `${field}.details.hashAlg`);
      const kdf = r.u16(`${field}.details.kdf`);
      if (!XOR_KDFS.has(kdf)) r.fail(`${field}.details.kdf`, `${algName(kdf)} is not a TPMI_ALG_KDF`);
      return { scheme, hashAlg, kdf };
    }
  }
}

function writeScheme(w: TpmWriter, s: TpmtScheme, table: ReadonlyMap<number, Details>): void {
  const details = table.get(s.scheme);
  if (details === undefined) throw new RangeError(`scheme ${algName(s.scheme)} is not allowed here`);
  w.u16(s.scheme);
  if (details === 'none') return;
  if (s.hashAlg === undefined) throw new RangeError(`scheme ${algName(s.scheme)} needs hashAlg`);
  w.u16(s.hashAlg);
  if (details === 'ecdaa') w.u16(s.count ?? 0);
  if (details === 'xor') w.u16(s.kdf ?? TPM_ALG.NULL);
}

// --- ECC point ----------------------------------------------------------------------

export function readTpmsEccPoint(r: TpmReader, field = 'TPMS_ECC_POINT'): TpmsEccPoint {
  return { x: Tpm2bEccParameter.read(r, `${field}.x`), y: Tpm2bEccParameter.read(r, `${field}.y`) };
}

export function writeTpmsEccPoint(w: TpmWriter, p: TpmsEccPoint): void {
  Tpm2bEccParameter.write(w, p.x);
  Tpm2bEccParameter.write(w, p.y);
}

// --- TPMT_PUBLIC --------------------------------------------------------------------

const PUBLIC_TYPES = new Set<number>([TPM_ALG.RSA, TPM_ALG.ECC, TPM_ALG.KEYEDHASH, TPM_ALG.SYMCIPHER]);

export function readTpmtPublic(r: TpmReader): TpmtPublic {
  const type = r.u16('type');
  if (!PUBLIC_TYPES.has(type)) r.fail('type', `${algName(type)} is not a TPMI_ALG_PUBLIC`);
  const nameAlg = readHashAlg(r, 'nameAlg', true);
  const objectAttributes = r.u32('objectAttributes');
  const authPolicy = Tpm2bDigest.read(r, 'authPolicy');
  const base = { nameAlg, objectAttributes, authPolicy };
  switch (type) {
    case TPM_ALG.RSA: {
      const parameters: TpmsRsaParms = {
        symmetric: readTpmtSymDefObject(r, 'parameters.symmetric'),
        scheme: readScheme(r, 'parameters.scheme', RSA_SCHEMES),
        keyBits: r.u16('parameters.keyBits'),
        exponent: r.u32('parameters.exponent'),
      };
      return { type, ...base, parameters, unique: Tpm2bPublicKeyRsa.read(r, 'unique.rsa') };
    }
    case TPM_ALG.ECC: {
      const symmetric = readTpmtSymDefObject(r, 'parameters.symmetric');
      const scheme = readScheme(r, 'parameters.scheme', ECC_SCHEMES);
      const curveID = r.u16('parameters.curveID');
      if (!ECC_CURVES.has(curveID)) r.fail('parameters.curveID', `0x${curveID.toString(16)} is not a TPM_ECC_CURVE`);
      const kdf = readScheme(r, 'parameters.kdf', KDF_SCHEMES);
      return { type, ...base, parameters: { symmetric, scheme, curveID, kdf }, unique: readTpmsEccPoint(r, 'unique.ecc') };
    }
    case TPM_ALG.KEYEDHASH:
      return { type, ...base, parameters: { scheme: readScheme(r, 'parameters.scheme', KEYEDHASH_SCHEMES) }, unique: Tpm2bDigest.read(r, 'unique.keyedHash') };
    case TPM_ALG.SYMCIPHER:
      return { type, ...base, parameters: { sym: readTpmtSymDefObject(r, 'parameters.sym') }, unique: Tpm2bDigest.read(r, 'unique.sym') };
    default:
      return r.fail('type', `${algName(type)} is not a TPMI_ALG_PUBLIC`);
  }
}

export function writeTpmtPublic(w: TpmWriter, p: TpmtPublic): void {
  w.u16(p.type).u16(p.nameAlg).u32(p.objectAttributes);
  Tpm2bDigest.write(w, p.authPolicy);
  switch (p.type) {
    case TPM_ALG.RSA:
      writeTpmtSymDefObject(w, p.parameters.symmetric);
      writeScheme(w, p.parameters.scheme, RSA_SCHEMES);
      w.u16(p.parameters.keyBits).u32(p.parameters.exponent);
      Tpm2bPublicKeyRsa.write(w, p.unique);
      return;
    case TPM_ALG.ECC:
      writeTpmtSymDefObject(w, p.parameters.symmetric);
      writeScheme(w, p.parameters.scheme, ECC_SCHEMES);
      w.u16(p.parameters.curveID);
      writeScheme(w, p.parameters.kdf, KDF_SCHEMES);
      writeTpmsEccPoint(w, p.unique);
      return;
    case TPM_ALG.KEYEDHASH:
      writeScheme(w, p.parameters.scheme, KEYEDHASH_SCHEMES);
      Tpm2bDigest.write(w, p.unique);
      return;
    case TPM_ALG.SYMCIPHER:
      writeTpmtSymDefObject(w, p.parameters.sym);
      Tpm2bDigest.write(w, p.unique);
      return;
  }
}

/** The bound on a TPM2B_PUBLIC's size: an RSA-4096 public area with a SHA-512 policy fits easily. */
export const TPM2B_PUBLIC_MAX = 1024;

/** TPM2B_PUBLIC (Part 2 §12.2.5): UINT16 size ‖ TPMT_PUBLIC, the size covering exactly the structure. */
export function readTpm2bPublic(r: TpmReader, field = 'TPM2B_PUBLIC'): TpmtPublic {
  const size = r.u16(`${field}.size`);
  if (size > TPM2B_PUBLIC_MAX) r.fail(`${field}.size`, `size ${size} exceeds the bound ${TPM2B_PUBLIC_MAX}`);
  const inner = r.sub(size, field, 'TPMT_PUBLIC');
  const pub = readTpmtPublic(inner);
  inner.end();
  return pub;
}

export function writeTpm2bPublic(w: TpmWriter, p: TpmtPublic): void {
  w.sizedBlock((x) => writeTpmtPublic(x, p), 'TPM2B_PUBLIC');
}

export function parseTpmtPublic(bytes: Uint8Array): TpmtPublic {
  return parseWhole(bytes, 'TPMT_PUBLIC', readTpmtPublic);
}

export function parseTpm2bPublic(bytes: Uint8Array): TpmtPublic {
  return parseWhole(bytes, 'TPM2B_PUBLIC', (r) => readTpm2bPublic(r));
}

export function marshalTpmtPublic(p: TpmtPublic): Buffer {
  const w = new TpmWriter(512);
  writeTpmtPublic(w, p);
  return w.finish();
}

export function marshalTpm2bPublic(p: TpmtPublic): Buffer {
  const w = new TpmWriter(512);
  writeTpm2bPublic(w, p);
  return w.finish();
}
