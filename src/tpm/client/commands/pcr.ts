// TPM2_PCR_Extend (Part 3 §22.2) and TPM2_PCR_Read (Part 3 §22.4). A PCR_Read answers
// at most 8 digests and says which PCRs it read (pcrSelectionOut); the rest is asked
// again until every requested PCR has a value (bounded by the number requested).
import { BOUNDS, TPM_ALG } from '../../constants.js';
import { readTpmlPcrSelection, writeTpmlPcrSelection, type TpmlPcrSelection } from '../../structures/pcr-selection.js';
import { writeTpmtHa, type TpmtHa } from '../../structures/ha.js';
import { Tpm2bDigest } from '../../structures/sized.js';
import { EMPTY_AUTH, type Authorization } from '../authorization.js';
import type { TpmClient } from '../client.js';
import { PCR_READ_MAX_DIGESTS, TPM_CC } from '../constants.js';
import { TrustlaunchError } from '../../../protocol/errors.js';
import { malformedResponse } from '../errors.js';

/** TPM2_PCR_Extend of one PCR in every bank given (TPML_DIGEST_VALUES). */
export function pcrExtend(tpm: TpmClient, pcr: number, digests: readonly TpmtHa[], auth: Authorization = EMPTY_AUTH): Promise<void> {
  if (!Number.isInteger(pcr) || pcr < 0 || pcr >= BOUNDS.PCR_SELECT * 8) throw new RangeError(`PCR index ${pcr} out of range`);
  if (digests.length === 0 || digests.length > BOUNDS.HASH_COUNT) throw new RangeError('PCR_Extend takes 1..16 digests');
  return tpm.run({
    code: TPM_CC.PCR_Extend,
    handles: [pcr],
    authorizations: [auth],
    parameters: (w) => {
      w.u32(digests.length);
      for (const d of digests) writeTpmtHa(w, d);
    },
  });
}

export interface PcrReadResult {
  /** Bank (TPM_ALG id) → PCR index → value. */
  readonly values: ReadonlyMap<number, ReadonlyMap<number, Buffer>>;
  /** pcrUpdateCounter of the last read. */
  readonly updateCounter: number;
}

interface OneRead {
  readonly updateCounter: number;
  readonly selection: TpmlPcrSelection;
  readonly digests: readonly Buffer[];
}

function pcrReadOnce(tpm: TpmClient, selection: TpmlPcrSelection): Promise<OneRead> {
  return tpm.run({
    code: TPM_CC.PCR_Read,
    parameters: (w) => writeTpmlPcrSelection(w, selection),
    response: (r) => {
      const updateCounter = r.u32('pcrUpdateCounter');
      const sel = readTpmlPcrSelection(r, 'pcrSelectionOut');
      const n = r.count('pcrValues.count', PCR_READ_MAX_DIGESTS);
      const digests: Buffer[] = [];
      for (let i = 0; i < n; i++) digests.push(Buffer.from(Tpm2bDigest.read(r, `pcrValues.digests[${i}]`)));
      return { updateCounter, selection: sel, digests };
    },
  });
}

/** TPM2_PCR_Read of every PCR in `selection`; a PCR the TPM does not have is an error, not a gap. */
export async function pcrRead(tpm: TpmClient, selection: TpmlPcrSelection): Promise<PcrReadResult> {
  const wanted = new Map<number, Set<number>>();
  for (const s of selection) wanted.set(s.hash, new Set([...(wanted.get(s.hash) ?? []), ...s.pcrs]));
  const values = new Map<number, Map<number, Buffer>>([...wanted.keys()].map((h) => [h, new Map()]));
  const total = [...wanted.values()].reduce((n, s) => n + s.size, 0);
  let updateCounter = 0;
  for (let round = 0; round <= total; round++) {
    const pending = [...wanted].filter(([, s]) => s.size > 0).map(([hash, s]) => ({ hash, pcrs: [...s].sort((a, b) => a - b), sizeofSelect: BOUNDS.PCR_SELECT }));
    if (pending.length === 0) return { values, updateCounter };
    const got = await pcrReadOnce(tpm, pending);
    updateCounter = got.updateCounter;
    let k = 0;
    for (const s of got.selection) {
      for (const i of s.pcrs) {
        const digest = got.digests[k++];
        const bank = wanted.get(s.hash);
        if (digest === undefined || bank?.has(i) !== true) throw malformedResponse(`PCR_Read answered a PCR (${i}) or a digest count that was not asked for`);
        bank.delete(i);
        values.get(s.hash)?.set(i, digest);
      }
    }
    if (k !== got.digests.length) throw malformedResponse('PCR_Read answered more digests than its selection names');
    if (k === 0) throw new TrustlaunchError('UNSUPPORTED', `the TPM has no PCR among ${JSON.stringify(pending.map((p) => ({ bank: p.hash, pcrs: p.pcrs })))}`);
  }
  throw malformedResponse('PCR_Read made no progress');
}

/** SHA-256 values of `pcrs` (the bank every trustlaunch quote covers). */
export async function pcrReadSha256(tpm: TpmClient, pcrs: readonly number[]): Promise<Map<number, Buffer>> {
  const { values } = await pcrRead(tpm, [{ hash: TPM_ALG.SHA256, pcrs: [...pcrs], sizeofSelect: BOUNDS.PCR_SELECT }]);
  return new Map(values.get(TPM_ALG.SHA256) ?? []);
}
