// NV indices of the software TPM (Part 1 §37 "NV Memory", Part 3 §31 NV commands), with
// the failures a real TPM gives, as typed codes: TPM_RC_NV_DEFINED → NV_INDEX_EXISTS,
// TPM_RC_HANDLE → NV_INDEX_UNDEFINED, TPM_RC_NV_LOCKED → NV_LOCKED, TPM_RC_NV_RANGE /
// TPM_RC_NV_SIZE / TPM_RC_NV_SPACE → NV_SIZE_EXCEEDED, TPM_RC_NV_UNINITIALIZED →
// NV_UNINITIALIZED, TPM_RC_ATTRIBUTES / TPM_RC_NV_AUTHORIZATION → NV_ATTRIBUTES.
import { TrustlaunchError } from '../../protocol/errors.js';
import { toBase64url } from '../../protocol/base64url.js';
import { NV_INDEX_MAX } from '../auth-device.js';
import { TPM_HT } from '../constants.js';
import type { SimNvIndex } from './state.js';

/** Most indices the software TPM holds (TPM_RC_NV_SPACE beyond). */
export const NV_INDEX_COUNT_MAX = 64;

export interface NvDefinition {
  readonly size: number;
  /** TPMA_NV_WRITE_STCLEAR. */
  readonly writeStClear?: boolean;
  /** TPMA_NV_WRITEDEFINE. */
  readonly writeDefine?: boolean;
  /** TPMA_NV_PLATFORMCREATE (the manufacturer's EK certificate indices). */
  readonly platformCreate?: boolean;
}

function hex(index: number): string {
  return `0x${index.toString(16).padStart(8, '0')}`;
}

/** NV operations over the state's `nv` array (mutated in place; the engine persists). */
export class NvSpace {
  readonly #indices: SimNvIndex[];
  readonly #data = new Map<number, Buffer>();

  constructor(indices: SimNvIndex[]) {
    this.#indices = indices;
    for (const i of indices) this.#data.set(i.index, Buffer.from(i.data, 'base64url'));
  }

  #find(index: number): SimNvIndex {
    const nv = this.#indices.find((i) => i.index === index);
    if (nv === undefined) throw new TrustlaunchError('NV_INDEX_UNDEFINED', `NV index ${hex(index)} is not defined`, { detail: { index } });
    return nv;
  }

  #sync(nv: SimNvIndex): void {
    nv.data = toBase64url(this.#data.get(nv.index) ?? Buffer.alloc(0));
  }

  define(index: number, d: NvDefinition): void {
    if (!Number.isInteger(index) || index >>> 24 !== TPM_HT.NV_INDEX) {
      throw new TrustlaunchError('UNSUPPORTED', `${hex(index)} is not an NV index handle (TPM_RC_VALUE)`);
    }
    if (!Number.isInteger(d.size) || d.size < 1 || d.size > NV_INDEX_MAX) {
      throw new TrustlaunchError('NV_SIZE_EXCEEDED', `NV index size ${d.size} outside 1..${NV_INDEX_MAX}`, { detail: { index } });
    }
    if (this.#indices.some((i) => i.index === index)) throw new TrustlaunchError('NV_INDEX_EXISTS', `NV index ${hex(index)} is already defined`, { detail: { index } });
    if (this.#indices.length >= NV_INDEX_COUNT_MAX) throw new TrustlaunchError('NV_SIZE_EXCEEDED', `no NV space for another index (TPM_RC_NV_SPACE)`);
    // Like the reference TPM (and swtpm), the data reads as erased flash (0xFF) once written around.
    const data = Buffer.alloc(d.size, 0xff);
    this.#data.set(index, data);
    this.#indices.push({
      index,
      size: d.size,
      writeStClear: d.writeStClear ?? false,
      writeDefine: d.writeDefine ?? false,
      platformCreate: d.platformCreate ?? false,
      written: false,
      writeLocked: false,
      data: toBase64url(data),
    });
  }

  write(index: number, data: Uint8Array, offset = 0): void {
    const nv = this.#find(index);
    if (nv.writeLocked) throw new TrustlaunchError('NV_LOCKED', `NV index ${hex(index)} is write-locked`, { detail: { index } });
    if (!Number.isInteger(offset) || offset < 0 || offset + data.length > nv.size) {
      throw new TrustlaunchError('NV_SIZE_EXCEEDED', `writing ${data.length} bytes at ${offset} overruns NV index ${hex(index)} of ${nv.size} bytes`, { detail: { index } });
    }
    const buf = this.#data.get(index) ?? Buffer.alloc(nv.size, 0xff);
    buf.set(data, offset);
    this.#data.set(index, buf);
    nv.written = true;
    this.#sync(nv);
  }

  read(index: number): Buffer {
    const nv = this.#find(index);
    if (!nv.written) throw new TrustlaunchError('NV_UNINITIALIZED', `NV index ${hex(index)} has not been written`, { detail: { index } });
    return Buffer.from(this.#data.get(index) ?? Buffer.alloc(0));
  }

  size(index: number): number | undefined {
    return this.#indices.find((i) => i.index === index)?.size;
  }

  writeLock(index: number): void {
    const nv = this.#find(index);
    if (!nv.writeStClear && !nv.writeDefine) {
      throw new TrustlaunchError('NV_ATTRIBUTES', `NV index ${hex(index)} has neither TPMA_NV_WRITE_STCLEAR nor TPMA_NV_WRITEDEFINE`, { detail: { index } });
    }
    nv.writeLocked = true;
  }

  undefine(index: number): void {
    const nv = this.#find(index);
    if (nv.platformCreate) throw new TrustlaunchError('NV_ATTRIBUTES', `NV index ${hex(index)} belongs to the platform (TPMA_NV_PLATFORMCREATE)`, { detail: { index } });
    this.#indices.splice(this.#indices.indexOf(nv), 1);
    this.#data.delete(index);
  }

  /** TPM2_Startup(CLEAR): locks taken under TPMA_NV_WRITE_STCLEAR end; TPMA_NV_WRITEDEFINE locks stay. */
  startupClear(): void {
    for (const nv of this.#indices) if (nv.writeLocked && !nv.writeDefine) nv.writeLocked = false;
  }
}
