// TPMS_ATTEST (Part 2 §10.12.12) with TPMS_CLOCK_INFO (§10.11.1) and every TPMU_ATTEST arm
// (§10.12.11). The magic is read, not enforced, here: judging it is the quote verifier's
// step, so tpm2_print-style tools can still show a forged structure.
import { TPM_ST } from '../constants.js';
import type { TpmReader } from '../marshal/reader.js';
import { parseWhole } from '../marshal/reader.js';
import { TpmWriter } from '../marshal/writer.js';
import { readHashAlg } from './ha.js';
import { readTpmlPcrSelection, writeTpmlPcrSelection, type TpmlPcrSelection } from './pcr-selection.js';
import { Tpm2bData, Tpm2bDigest, Tpm2bMaxNvBuffer, Tpm2bName } from './sized.js';

/** TPMS_CLOCK_INFO (Part 2 §10.11.1). */
export interface TpmsClockInfo {
  /** Milliseconds the TPM has been powered since it was last cleared. */
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
}

/** TPMS_QUOTE_INFO (Part 2 §10.12.4). */
export interface TpmsQuoteInfo {
  readonly kind: 'quote';
  readonly pcrSelect: TpmlPcrSelection;
  readonly pcrDigest: Uint8Array;
}
/** TPMS_CERTIFY_INFO (Part 2 §10.12.3). */
export interface TpmsCertifyInfo {
  readonly kind: 'certify';
  readonly name: Uint8Array;
  readonly qualifiedName: Uint8Array;
}
/** TPMS_CREATION_INFO (Part 2 §10.12.7). */
export interface TpmsCreationInfo {
  readonly kind: 'creation';
  readonly objectName: Uint8Array;
  readonly creationHash: Uint8Array;
}
/** TPMS_COMMAND_AUDIT_INFO (Part 2 §10.12.5). */
export interface TpmsCommandAuditInfo {
  readonly kind: 'commandAudit';
  readonly auditCounter: bigint;
  readonly digestAlg: number;
  readonly auditDigest: Uint8Array;
  readonly commandDigest: Uint8Array;
}
/** TPMS_SESSION_AUDIT_INFO (Part 2 §10.12.6). */
export interface TpmsSessionAuditInfo {
  readonly kind: 'sessionAudit';
  readonly exclusiveSession: boolean;
  readonly sessionDigest: Uint8Array;
}
/** TPMS_TIME_ATTEST_INFO (Part 2 §10.12.2) holding TPMS_TIME_INFO (§10.11.6). */
export interface TpmsTimeAttestInfo {
  readonly kind: 'time';
  readonly time: bigint;
  readonly clockInfo: TpmsClockInfo;
  readonly firmwareVersion: bigint;
}
/** TPMS_NV_CERTIFY_INFO (Part 2 §10.12.8). */
export interface TpmsNvCertifyInfo {
  readonly kind: 'nv';
  readonly indexName: Uint8Array;
  readonly offset: number;
  readonly nvContents: Uint8Array;
}
/** TPMS_NV_DIGEST_CERTIFY_INFO (Part 2 §10.12.9). */
export interface TpmsNvDigestCertifyInfo {
  readonly kind: 'nvDigest';
  readonly indexName: Uint8Array;
  readonly nvDigest: Uint8Array;
}

export type TpmuAttest =
  | TpmsQuoteInfo
  | TpmsCertifyInfo
  | TpmsCreationInfo
  | TpmsCommandAuditInfo
  | TpmsSessionAuditInfo
  | TpmsTimeAttestInfo
  | TpmsNvCertifyInfo
  | TpmsNvDigestCertifyInfo;

export interface TpmsAttest {
  readonly magic: number;
  /** TPMI_ST_ATTEST: selects the arm of `attested`. */
  readonly type: number;
  readonly qualifiedSigner: Uint8Array;
  readonly extraData: Uint8Array;
  readonly clockInfo: TpmsClockInfo;
  readonly firmwareVersion: bigint;
  readonly attested: TpmuAttest;
}

/** TPMI_ST_ATTEST selector of each TPMU_ATTEST arm. */
export const ATTEST_TYPE_OF: Readonly<Record<TpmuAttest['kind'], number>> = {
  quote: TPM_ST.ATTEST_QUOTE,
  certify: TPM_ST.ATTEST_CERTIFY,
  creation: TPM_ST.ATTEST_CREATION,
  commandAudit: TPM_ST.ATTEST_COMMAND_AUDIT,
  sessionAudit: TPM_ST.ATTEST_SESSION_AUDIT,
  time: TPM_ST.ATTEST_TIME,
  nv: TPM_ST.ATTEST_NV,
  nvDigest: TPM_ST.ATTEST_NV_DIGEST,
};

function readYesNo(r: TpmReader, field: string): boolean {
  const v = r.u8(field);
  if (v > 1) r.fail(field, `TPMI_YES_NO must be 0 or 1, got ${v}`);
  return v === 1;
}

export function readTpmsClockInfo(r: TpmReader, field = 'TPMS_CLOCK_INFO'): TpmsClockInfo {
  return {
    clock: r.u64(`${field}.clock`),
    resetCount: r.u32(`${field}.resetCount`),
    restartCount: r.u32(`${field}.restartCount`),
    safe: readYesNo(r, `${field}.safe`),
  };
}

export function writeTpmsClockInfo(w: TpmWriter, c: TpmsClockInfo): void {
  w.u64(c.clock).u32(c.resetCount).u32(c.restartCount).u8(c.safe ? 1 : 0);
}

function readAttested(r: TpmReader, type: number): TpmuAttest {
  const f = 'attested';
  switch (type) {
    case TPM_ST.ATTEST_QUOTE:
      return { kind: 'quote', pcrSelect: readTpmlPcrSelection(r, `${f}.pcrSelect`), pcrDigest: Tpm2bDigest.read(r, `${f}.pcrDigest`) };
    case TPM_ST.ATTEST_CERTIFY:
      return { kind: 'certify', name: Tpm2bName.read(r, `${f}.name`), qualifiedName: Tpm2bName.read(r, `${f}.qualifiedName`) };
    case TPM_ST.ATTEST_CREATION:
      return { kind: 'creation', objectName: Tpm2bName.read(r, `${f}.objectName`), creationHash: Tpm2bDigest.read(r, `${f}.creationHash`) };
    case TPM_ST.ATTEST_COMMAND_AUDIT:
      return {
        kind: 'commandAudit',
        auditCounter: r.u64(`${f}.auditCounter`),
        digestAlg: readHashAlg(r, `${f}.digestAlg`),
        auditDigest: Tpm2bDigest.read(r, `${f}.auditDigest`),
        commandDigest: Tpm2bDigest.read(r, `${f}.commandDigest`),
      };
    case TPM_ST.ATTEST_SESSION_AUDIT:
      return { kind: 'sessionAudit', exclusiveSession: readYesNo(r, `${f}.exclusiveSession`), sessionDigest: Tpm2bDigest.read(r, `${f}.sessionDigest`) };
    case TPM_ST.ATTEST_TIME:
      return {
        kind: 'time',
        time: r.u64(`${f}.time.time`),
        clockInfo: readTpmsClockInfo(r, `${f}.time.clockInfo`),
        firmwareVersion: r.u64(`${f}.firmwareVersion`),
      };
    case TPM_ST.ATTEST_NV:
      return { kind: 'nv', indexName: Tpm2bName.read(r, `${f}.indexName`), offset: r.u16(`${f}.offset`), nvContents: Tpm2bMaxNvBuffer.read(r, `${f}.nvContents`) };
    case TPM_ST.ATTEST_NV_DIGEST:
      return { kind: 'nvDigest', indexName: Tpm2bName.read(r, `${f}.indexName`), nvDigest: Tpm2bDigest.read(r, `${f}.nvDigest`) };
    default:
      return r.fail('type', `0x${type.toString(16)} is not a TPMI_ST_ATTEST`);
  }
}

function writeAttested(w: TpmWriter, a: TpmuAttest): void {
  switch (a.kind) {
    case 'quote':
      writeTpmlPcrSelection(w, a.pcrSelect);
      Tpm2bDigest.write(w, a.pcrDigest);
      return;
    case 'certify':
      Tpm2bName.write(w, a.name);
      Tpm2bName.write(w, a.qualifiedName);
      return;
    case 'creation':
      Tpm2bName.write(w, a.objectName);
      Tpm2bDigest.write(w, a.creationHash);
      return;
    case 'commandAudit':
      w.u64(a.auditCounter).u16(a.digestAlg);
      Tpm2bDigest.write(w, a.auditDigest);
      Tpm2bDigest.write(w, a.commandDigest);
      return;
    case 'sessionAudit':
      w.u8(a.exclusiveSession ? 1 : 0);
      Tpm2bDigest.write(w, a.sessionDigest);
      return;
    case 'time':
      w.u64(a.time);
      writeTpmsClockInfo(w, a.clockInfo);
      w.u64(a.firmwareVersion);
      return;
    case 'nv':
      Tpm2bName.write(w, a.indexName);
      w.u16(a.offset);
      Tpm2bMaxNvBuffer.write(w, a.nvContents);
      return;
    case 'nvDigest':
      Tpm2bName.write(w, a.indexName);
      Tpm2bDigest.write(w, a.nvDigest);
      return;
  }
}

export function readTpmsAttest(r: TpmReader): TpmsAttest {
  const magic = r.u32('magic');
  const type = r.u16('type');
  const qualifiedSigner = Tpm2bName.read(r, 'qualifiedSigner');
  const extraData = Tpm2bData.read(r, 'extraData');
  const clockInfo = readTpmsClockInfo(r, 'clockInfo');
  const firmwareVersion = r.u64('firmwareVersion');
  const attested = readAttested(r, type);
  return { magic, type, qualifiedSigner, extraData, clockInfo, firmwareVersion, attested };
}

export function writeTpmsAttest(w: TpmWriter, a: TpmsAttest): void {
  if (ATTEST_TYPE_OF[a.attested.kind] !== a.type) throw new RangeError(`TPMS_ATTEST: type 0x${a.type.toString(16)} does not select the ${a.attested.kind} arm`);
  w.u32(a.magic).u16(a.type);
  Tpm2bName.write(w, a.qualifiedSigner);
  Tpm2bData.write(w, a.extraData);
  writeTpmsClockInfo(w, a.clockInfo);
  w.u64(a.firmwareVersion);
  writeAttested(w, a.attested);
}

/** Parses a whole TPMS_ATTEST (trailing bytes rejected). Untrusted: verify the signature over these bytes first. */
export function parseTpmsAttest(bytes: Uint8Array): TpmsAttest {
  return parseWhole(bytes, 'TPMS_ATTEST', readTpmsAttest);
}

export function marshalTpmsAttest(a: TpmsAttest): Buffer {
  const w = new TpmWriter(256);
  writeTpmsAttest(w, a);
  return w.finish();
}
