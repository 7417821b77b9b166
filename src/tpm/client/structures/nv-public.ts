// TPMS_NV_PUBLIC (Part 2 §13.5) and TPM2B_NV_PUBLIC (§13.6): an NV index's public area.
// Its Name is nameAlg ‖ H(TPMS_NV_PUBLIC) (Part 1 §16), like an object's.
import { BOUNDS, TPM_HT } from '../../constants.js';
import { tpmHash } from '../../crypto/hash.js';
import { parseWhole, type TpmReader } from '../../marshal/reader.js';
import { TpmWriter } from '../../marshal/writer.js';
import { readHashAlg } from '../../structures/ha.js';
import { Tpm2bDigest } from '../../structures/sized.js';

export interface TpmsNvPublic {
  readonly nvIndex: number;
  readonly nameAlg: number;
  /** TPMA_NV bits (client/constants.ts). */
  readonly attributes: number;
  readonly authPolicy: Uint8Array;
  readonly dataSize: number;
}

/** Largest NV index this client handles (NV_INDEX_MAX of PC Client TPMs is 2048; allow a larger vendor value). */
export const NV_DATA_SIZE_MAX = 8192;

export function readTpmsNvPublic(r: TpmReader, field = 'TPMS_NV_PUBLIC'): TpmsNvPublic {
  const nvIndex = r.u32(`${field}.nvIndex`);
  if (nvIndex >>> 24 !== TPM_HT.NV_INDEX) r.fail(`${field}.nvIndex`, `0x${nvIndex.toString(16)} is not an NV index handle`);
  const nameAlg = readHashAlg(r, `${field}.nameAlg`);
  const attributes = r.u32(`${field}.attributes`);
  const authPolicy = Tpm2bDigest.read(r, `${field}.authPolicy`);
  const dataSize = r.u16(`${field}.dataSize`);
  if (dataSize > NV_DATA_SIZE_MAX) r.fail(`${field}.dataSize`, `${dataSize} exceeds ${NV_DATA_SIZE_MAX}`);
  return { nvIndex, nameAlg, attributes, authPolicy, dataSize };
}

export function writeTpmsNvPublic(w: TpmWriter, p: TpmsNvPublic): void {
  w.u32(p.nvIndex).u16(p.nameAlg).u32(p.attributes >>> 0);
  Tpm2bDigest.write(w, p.authPolicy);
  w.u16(p.dataSize);
}

/** TPM2B_NV_PUBLIC: UINT16 size ‖ TPMS_NV_PUBLIC, the size covering exactly the structure. */
export function readTpm2bNvPublic(r: TpmReader, field = 'TPM2B_NV_PUBLIC'): TpmsNvPublic {
  const size = r.u16(`${field}.size`);
  if (size > 4 + 2 + 4 + 2 + BOUNDS.DIGEST + 2) r.fail(`${field}.size`, `${size} is larger than any TPMS_NV_PUBLIC`);
  const inner = r.sub(size, field, 'TPMS_NV_PUBLIC');
  const p = readTpmsNvPublic(inner);
  inner.end();
  return p;
}

export function writeTpm2bNvPublic(w: TpmWriter, p: TpmsNvPublic): void {
  w.sizedBlock((x) => writeTpmsNvPublic(x, p), 'TPM2B_NV_PUBLIC');
}

/** The Name of an NV index (Part 1 §16): nameAlg ‖ H_nameAlg(TPMS_NV_PUBLIC). */
export function nvName(p: TpmsNvPublic): Buffer {
  const w = new TpmWriter(96);
  writeTpmsNvPublic(w, p);
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(p.nameAlg);
  return Buffer.concat([alg, tpmHash(p.nameAlg, w.finish())]);
}

export function parseTpmsNvPublic(bytes: Uint8Array): TpmsNvPublic {
  return parseWhole(bytes, 'TPMS_NV_PUBLIC', (r) => readTpmsNvPublic(r));
}
