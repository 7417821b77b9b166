// The pcrDigest of TPMS_QUOTE_INFO (Part 3 §18.4 TPM2_Quote): H_signHash of the selected PCR
// values concatenated in selection order (banks in TPML order, indices ascending).
import type { TpmlPcrSelection } from '../structures/pcr-selection.js';
import { tpmHash } from './hash.js';

/** `valueOf(bank, index)` must return the register's value; undefined means the value is missing. */
export function pcrDigest(hashAlg: number, selection: TpmlPcrSelection, valueOf: (bank: number, index: number) => Uint8Array | undefined): Buffer | undefined {
  const values: Uint8Array[] = [];
  for (const s of selection) {
    for (const i of s.pcrs) {
      const v = valueOf(s.hash, i);
      if (v === undefined) return undefined;
      values.push(v);
    }
  }
  return tpmHash(hashAlg, ...values);
}
