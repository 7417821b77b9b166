// TPMS_PCR_SELECTION (Part 2 §10.6.2) and TPML_PCR_SELECTION (Part 2 §10.9.7).
// The bitmap is kept as sorted PCR indices plus sizeofSelect, which round-trips exactly.
import { BOUNDS } from '../constants.js';
import type { TpmReader } from '../marshal/reader.js';
import type { TpmWriter } from '../marshal/writer.js';
import { readHashAlg } from './ha.js';

export interface TpmsPcrSelection {
  readonly hash: number;
  /** Selected PCR indices, ascending (bit i of octet j selects PCR 8j + i). */
  readonly pcrs: readonly number[];
  /** Octets in the bitmap; a TPM with 24 PCRs writes 3. */
  readonly sizeofSelect: number;
}

export type TpmlPcrSelection = readonly TpmsPcrSelection[];

/** A selection of `pcrs` in bank `hash` with the 3-octet bitmap every PC Client TPM uses. */
export function pcrSelection(hash: number, pcrs: readonly number[]): TpmsPcrSelection {
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p >= BOUNDS.PCR_SELECT * 8) throw new RangeError(`PCR index ${p} out of range`);
  }
  return { hash, pcrs: [...new Set(pcrs)].sort((a, b) => a - b), sizeofSelect: BOUNDS.PCR_SELECT };
}

export function readTpmsPcrSelection(r: TpmReader, field = 'TPMS_PCR_SELECTION'): TpmsPcrSelection {
  const hash = readHashAlg(r, `${field}.hash`);
  const sizeofSelect = r.u8(`${field}.sizeofSelect`);
  if (sizeofSelect > BOUNDS.PCR_SELECT) r.fail(`${field}.sizeofSelect`, `${sizeofSelect} exceeds PCR_SELECT_MAX ${BOUNDS.PCR_SELECT}`);
  const bitmap = r.bytes(sizeofSelect, `${field}.pcrSelect`);
  const pcrs: number[] = [];
  bitmap.forEach((octet, j) => {
    for (let i = 0; i < 8; i++) if ((octet >> i) & 1) pcrs.push(j * 8 + i);
  });
  return { hash, pcrs, sizeofSelect };
}

export function writeTpmsPcrSelection(w: TpmWriter, s: TpmsPcrSelection): void {
  const bitmap = new Uint8Array(s.sizeofSelect);
  for (const p of s.pcrs) {
    const octet = p >> 3;
    if (octet >= s.sizeofSelect) throw new RangeError(`PCR ${p} does not fit sizeofSelect ${s.sizeofSelect}`);
    bitmap[octet] = (bitmap[octet] ?? 0) | (1 << (p & 7));
  }
  w.u16(s.hash).u8(s.sizeofSelect).bytes(bitmap);
}

export function readTpmlPcrSelection(r: TpmReader, field = 'TPML_PCR_SELECTION'): TpmlPcrSelection {
  const count = r.count(`${field}.count`, BOUNDS.HASH_COUNT);
  const out: TpmsPcrSelection[] = [];
  for (let i = 0; i < count; i++) out.push(readTpmsPcrSelection(r, `${field}.pcrSelections[${i}]`));
  return out;
}

export function writeTpmlPcrSelection(w: TpmWriter, list: TpmlPcrSelection): void {
  w.u32(list.length);
  for (const s of list) writeTpmsPcrSelection(w, s);
}
