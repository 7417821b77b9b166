// TPM2_GetCapability (Part 3 §30.2) and TPM2_GetRandom (Part 3 §16.1), with the loops
// their answers need: moreData for long handle lists, short answers for random bytes.
// Every loop has a fixed bound, whatever the TPM claims.
import { Tpm2bDigest } from '../../structures/sized.js';
import type { TpmlPcrSelection } from '../../structures/pcr-selection.js';
import type { TpmClient } from '../client.js';
import { TPM_CAP, TPM_CC } from '../constants.js';
import { readCapabilityData, type CapabilityData } from '../structures/capability.js';
import { malformedResponse } from '../errors.js';

export interface CapabilityAnswer {
  readonly moreData: boolean;
  readonly data: CapabilityData;
}

export function getCapability(tpm: TpmClient, capability: number, property: number, propertyCount: number): Promise<CapabilityAnswer> {
  return tpm.run({
    code: TPM_CC.GetCapability,
    parameters: (w) => w.u32(capability).u32(property >>> 0).u32(propertyCount),
    response: (r) => {
      const more = r.u8('moreData');
      if (more > 1) r.fail('moreData', `${more} is not a TPMI_YES_NO`);
      return { moreData: more === 1, data: readCapabilityData(r, capability) };
    },
  });
}

const MAX_ROUNDS = 64;

/** Every handle of type `type` (TPM_HT: 0x80 transient, 0x81 persistent, 0x01 NV, 0x02/0x03 sessions), ascending. */
export async function getHandles(tpm: TpmClient, type: number): Promise<number[]> {
  const out: number[] = [];
  let next = (type << 24) >>> 0;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const { moreData, data } = await getCapability(tpm, TPM_CAP.HANDLES, next, 254);
    if (data.capability !== TPM_CAP.HANDLES) throw malformedResponse('GetCapability answered another capability');
    const ours = data.handles.filter((h) => h >>> 24 === type && h >= next);
    out.push(...ours);
    const last = ours.at(-1);
    if (!moreData || last === undefined) return out;
    next = last + 1;
  }
  throw malformedResponse(`the TPM kept announcing more handles after ${MAX_ROUNDS} rounds`);
}

/** TPM properties `first` .. `first + count - 1` that the TPM reports. */
export async function getProperties(tpm: TpmClient, first: number, count: number): Promise<Map<number, number>> {
  const { data } = await getCapability(tpm, TPM_CAP.TPM_PROPERTIES, first, count);
  if (data.capability !== TPM_CAP.TPM_PROPERTIES) throw malformedResponse('GetCapability answered another capability');
  return new Map(data.properties.filter((p) => p.property >= first && p.property < first + count).map((p) => [p.property, p.value]));
}

/** The PCR banks and which PCRs each has allocated. */
export async function getPcrBanks(tpm: TpmClient): Promise<TpmlPcrSelection> {
  const { data } = await getCapability(tpm, TPM_CAP.PCRS, 0, 1);
  if (data.capability !== TPM_CAP.PCRS) throw malformedResponse('GetCapability answered another capability');
  return data.pcrs;
}

/** `n` random bytes from the TPM's RNG (a TPM answers at most one digest's worth per call). */
export async function getRandom(tpm: TpmClient, n: number): Promise<Buffer> {
  if (!Number.isInteger(n) || n < 0 || n > 4096) throw new RangeError('getRandom: 0..4096 bytes');
  const parts: Buffer[] = [];
  let have = 0;
  for (let round = 0; have < n; round++) {
    if (round >= n + MAX_ROUNDS) throw malformedResponse('the TPM keeps answering GetRandom with no bytes');
    const want = Math.min(n - have, 64);
    const got = await tpm.run({ code: TPM_CC.GetRandom, parameters: (w) => w.u16(want), response: (r) => Buffer.from(Tpm2bDigest.read(r, 'randomBytes')) });
    if (got.length > want) throw malformedResponse(`GetRandom answered ${got.length} bytes for ${want}`);
    parts.push(got);
    have += got.length;
  }
  return Buffer.concat(parts, n);
}
