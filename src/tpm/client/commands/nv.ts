// NV commands: TPM2_NV_DefineSpace (Part 3 §31.3), TPM2_NV_UndefineSpace (§31.4),
// TPM2_NV_ReadPublic (§31.6), TPM2_NV_Write (§31.7), TPM2_NV_WriteLock (§31.9),
// TPM2_NV_Read (§31.13). Data longer than one TPM2B_MAX_NV_BUFFER goes in chunks.
import { BOUNDS, TPM_RH } from '../../constants.js';
import { Tpm2bMaxNvBuffer, Tpm2bName } from '../../structures/sized.js';
import { EMPTY_AUTH, type Authorization } from '../authorization.js';
import type { TpmClient } from '../client.js';
import { TPM_CC } from '../constants.js';
import { malformedResponse } from '../errors.js';
import { nvName, readTpm2bNvPublic, writeTpm2bNvPublic, type TpmsNvPublic } from '../structures/nv-public.js';

export interface NvDefineOptions {
  /** TPM_RH_OWNER (default) or TPM_RH_PLATFORM. */
  readonly authHandle?: number;
  readonly auth?: Authorization;
  /** The new index's own authValue (for TPMA_NV_AUTHREAD / AUTHWRITE). */
  readonly indexAuth?: Uint8Array;
  readonly public: TpmsNvPublic;
}

export function nvDefineSpace(tpm: TpmClient, o: NvDefineOptions): Promise<void> {
  return tpm.run({
    code: TPM_CC.NV_DefineSpace,
    handles: [o.authHandle ?? TPM_RH.OWNER],
    authorizations: [o.auth ?? EMPTY_AUTH],
    parameters: (w) => {
      w.sized(o.indexAuth ?? new Uint8Array(0), BOUNDS.DIGEST, 'TPM2B_AUTH');
      writeTpm2bNvPublic(w, o.public);
    },
  });
}

export interface NvIndexAccess {
  readonly index: number;
  /** Whose authorization is given: TPM_RH_OWNER (default), TPM_RH_PLATFORM, or the index itself. */
  readonly authHandle?: number;
  readonly auth?: Authorization;
}

export function nvUndefineSpace(tpm: TpmClient, o: NvIndexAccess): Promise<void> {
  return tpm.run({
    code: TPM_CC.NV_UndefineSpace,
    handles: [o.authHandle ?? TPM_RH.OWNER, o.index],
    authorizations: [o.auth ?? EMPTY_AUTH],
  });
}

export interface NvReadPublicResult {
  readonly public: TpmsNvPublic;
  readonly name: Buffer;
}

/** TPM2_NV_ReadPublic; the Name the TPM reports is checked against the public area. */
export function nvReadPublic(tpm: TpmClient, index: number): Promise<NvReadPublicResult> {
  return tpm.run({
    code: TPM_CC.NV_ReadPublic,
    handles: [index],
    response: (r) => {
      const pub = readTpm2bNvPublic(r, 'nvPublic');
      const reported = Tpm2bName.read(r, 'nvName');
      const name = nvName(pub);
      if (!name.equals(reported)) throw malformedResponse('NV_ReadPublic: the Name is not the hash of the public area');
      if (pub.nvIndex !== index) throw malformedResponse(`NV_ReadPublic of 0x${index.toString(16)} answered index 0x${pub.nvIndex.toString(16)}`);
      return { public: pub, name };
    },
  });
}

export interface NvWriteOptions extends NvIndexAccess {
  readonly data: Uint8Array;
  readonly offset?: number;
  /** Bytes per TPM2_NV_Write (the TPM's TPM_PT_NV_BUFFER_MAX; default 1024). */
  readonly chunkSize?: number;
}

function chunkSizeOf(o: { chunkSize?: number }): number {
  const c = o.chunkSize ?? BOUNDS.NV_BUFFER;
  if (!Number.isInteger(c) || c < 1 || c > BOUNDS.NV_BUFFER) throw new RangeError(`NV chunk size 1..${BOUNDS.NV_BUFFER}`);
  return c;
}

export async function nvWrite(tpm: TpmClient, o: NvWriteOptions): Promise<void> {
  const chunk = chunkSizeOf(o);
  const base = o.offset ?? 0;
  if (!Number.isInteger(base) || base < 0 || base + o.data.length > 0xffff) throw new RangeError('NV offset out of range');
  // A zero-length write still runs once: it sets TPMA_NV_WRITTEN.
  for (let at = 0; at === 0 || at < o.data.length; at += chunk) {
    const part = o.data.subarray(at, Math.min(at + chunk, o.data.length));
    await tpm.run({
      code: TPM_CC.NV_Write,
      handles: [o.authHandle ?? TPM_RH.OWNER, o.index],
      authorizations: [o.auth ?? EMPTY_AUTH],
      parameters: (w) => {
        Tpm2bMaxNvBuffer.write(w, part);
        w.u16(base + at);
      },
    });
  }
}

export interface NvReadOptions extends NvIndexAccess {
  readonly size: number;
  readonly offset?: number;
  readonly chunkSize?: number;
}

export async function nvRead(tpm: TpmClient, o: NvReadOptions): Promise<Buffer> {
  const chunk = chunkSizeOf(o);
  const base = o.offset ?? 0;
  if (!Number.isInteger(o.size) || o.size < 0 || !Number.isInteger(base) || base < 0 || base + o.size > 0xffff) throw new RangeError('NV read range out of range');
  const parts: Buffer[] = [];
  for (let at = 0; at < o.size; at += chunk) {
    const want = Math.min(chunk, o.size - at);
    const got = await tpm.run({
      code: TPM_CC.NV_Read,
      handles: [o.authHandle ?? TPM_RH.OWNER, o.index],
      authorizations: [o.auth ?? EMPTY_AUTH],
      parameters: (w) => w.u16(want).u16(base + at),
      response: (r) => Buffer.from(Tpm2bMaxNvBuffer.read(r, 'data')),
    });
    if (got.length !== want) throw malformedResponse(`NV_Read answered ${got.length} bytes for ${want}`);
    parts.push(got);
  }
  return Buffer.concat(parts, o.size);
}

/** TPM2_NV_WriteLock: no writes until the next TPM Reset (WRITE_STCLEAR) or ever (WRITEDEFINE). */
export function nvWriteLock(tpm: TpmClient, o: NvIndexAccess): Promise<void> {
  return tpm.run({
    code: TPM_CC.NV_WriteLock,
    handles: [o.authHandle ?? TPM_RH.OWNER, o.index],
    authorizations: [o.auth ?? EMPTY_AUTH],
  });
}
