// Where the TPM engine's state lives on a storage-only device: a superblock and two
// state slots, so a store is one atomic step even if power fails mid-write (the new
// slot's data is written and flushed before its header, and a load takes the valid slot
// with the highest generation). The same layout is read by manufacturing (directly on the
// medium) and by the mini-domain (through its MMIO/DMA driver).
//
//   block 0           superblock: "TLNVSTR1", version, block size, block count,
//                     blocks per slot, SHA-256 of those fields
//   slot A, slot B    a header block ("TLSLOT01", generation u64, length u32,
//                     SHA-256 of the data, SHA-256 of the header) and data blocks
import { createHash } from 'node:crypto';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { StateStore } from '../sim/store.js';
import type { BlockIo } from './block-io.js';

const SUPER_MAGIC = Buffer.from('TLNVSTR1', 'latin1');
const SLOT_MAGIC = Buffer.from('TLSLOT01', 'latin1');
const VERSION = 1;
const SUPER_FIELDS = 24;
const SLOT_FIELDS = 52;

interface Geometry {
  readonly slotBlocks: number;
}

interface SlotHeader {
  readonly generation: bigint;
  readonly length: number;
  readonly digest: Buffer;
}

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();
const corrupt = (why: string): TrustlaunchError => new TrustlaunchError('NVSTORE_CORRUPT', `pci-nvstore: ${why}`);
const blank = (b: Uint8Array): boolean => b.every((x) => x === 0);

function geometryOf(io: BlockIo): Geometry {
  return { slotBlocks: Math.floor((io.blockCount - 1) / 2) };
}

/** Writes the superblock of an empty device (manufacturing). Slots start blank: no state. */
export async function formatBlockStore(io: BlockIo): Promise<void> {
  const block = Buffer.alloc(io.blockSize);
  SUPER_MAGIC.copy(block, 0);
  block.writeUInt32BE(VERSION, 8);
  block.writeUInt32BE(io.blockSize, 12);
  block.writeUInt32BE(io.blockCount, 16);
  block.writeUInt32BE(geometryOf(io).slotBlocks, 20);
  sha256(block.subarray(0, SUPER_FIELDS)).copy(block, SUPER_FIELDS);
  await io.writeBlocks(0, block);
  await io.writeBlocks(1, Buffer.alloc(io.blockSize));
  await io.writeBlocks(1 + geometryOf(io).slotBlocks, Buffer.alloc(io.blockSize));
  await io.flush();
}

/** A StateStore on a block device; `maxStateBytes` is what one slot holds. */
export class BlockStateStore implements StateStore {
  readonly #io: BlockIo;
  readonly #geometry: Geometry;
  /** The slot holding the newest state and its generation, once known. */
  #current: { slot: 0 | 1; generation: bigint } | undefined;

  constructor(io: BlockIo) {
    if (io.blockSize < 128 || io.blockCount < 5) throw new RangeError('a block store needs blocks of at least 128 bytes and at least 5 of them');
    this.#io = io;
    this.#geometry = geometryOf(io);
  }

  get maxStateBytes(): number {
    return (this.#geometry.slotBlocks - 1) * this.#io.blockSize;
  }

  async load(): Promise<Uint8Array | undefined> {
    await this.#checkSuperblock();
    let best: { slot: 0 | 1; header: SlotHeader; data: Uint8Array } | undefined;
    let damaged = 0;
    for (const slot of [0, 1] as const) {
      const found = await this.#readSlot(slot);
      if (found === 'blank') continue;
      if (found === 'damaged') {
        damaged++;
        continue;
      }
      if (best === undefined || found.header.generation > best.header.generation) best = { slot, ...found };
    }
    if (best === undefined) {
      if (damaged > 0) throw corrupt('both state slots are damaged');
      this.#current = undefined;
      return undefined;
    }
    this.#current = { slot: best.slot, generation: best.header.generation };
    return best.data;
  }

  async store(bytes: Uint8Array): Promise<void> {
    if (bytes.length > this.maxStateBytes) throw new TrustlaunchError('NV_SIZE_EXCEEDED', `a TPM state of ${bytes.length} bytes exceeds the ${this.maxStateBytes} bytes of a pci-nvstore slot`);
    if (this.#current === undefined) await this.load();
    const current = this.#current;
    const slot: 0 | 1 = current === undefined ? 0 : current.slot === 0 ? 1 : 0;
    const generation = (current?.generation ?? 0n) + 1n;
    const bs = this.#io.blockSize;
    const base = this.#slotBase(slot);
    // Data first, made durable, then the header that makes it current.
    if (bytes.length > 0) {
      const data = Buffer.alloc(Math.ceil(bytes.length / bs) * bs);
      data.set(bytes);
      await this.#io.writeBlocks(base + 1, data);
      await this.#io.flush();
    }
    const header = Buffer.alloc(bs);
    SLOT_MAGIC.copy(header, 0);
    header.writeBigUInt64BE(generation, 8);
    header.writeUInt32BE(bytes.length, 16);
    sha256(bytes).copy(header, 20);
    sha256(header.subarray(0, SLOT_FIELDS)).copy(header, SLOT_FIELDS);
    await this.#io.writeBlocks(base, header);
    await this.#io.flush();
    this.#current = { slot, generation };
  }

  #slotBase(slot: 0 | 1): number {
    return 1 + slot * this.#geometry.slotBlocks;
  }

  async #checkSuperblock(): Promise<void> {
    const b = Buffer.from(await this.#io.readBlocks(0, 1));
    if (blank(b)) throw corrupt('the medium was never formatted (manufacture it first)');
    if (!b.subarray(0, 8).equals(SUPER_MAGIC)) throw corrupt('no superblock magic');
    if (!sha256(b.subarray(0, SUPER_FIELDS)).equals(b.subarray(SUPER_FIELDS, SUPER_FIELDS + 32))) throw corrupt('superblock checksum mismatch');
    const version = b.readUInt32BE(8);
    if (version !== VERSION) throw corrupt(`superblock version ${version} is not ${VERSION}`);
    if (b.readUInt32BE(12) !== this.#io.blockSize || b.readUInt32BE(16) !== this.#io.blockCount || b.readUInt32BE(20) !== this.#geometry.slotBlocks) {
      throw corrupt('the superblock describes another geometry than the device has');
    }
  }

  async #readSlot(slot: 0 | 1): Promise<'blank' | 'damaged' | { header: SlotHeader; data: Uint8Array }> {
    const base = this.#slotBase(slot);
    const h = Buffer.from(await this.#io.readBlocks(base, 1));
    if (blank(h)) return 'blank';
    if (!h.subarray(0, 8).equals(SLOT_MAGIC) || !sha256(h.subarray(0, SLOT_FIELDS)).equals(h.subarray(SLOT_FIELDS, SLOT_FIELDS + 32))) return 'damaged';
    const header: SlotHeader = { generation: h.readBigUInt64BE(8), length: h.readUInt32BE(16), digest: Buffer.from(h.subarray(20, 52)) };
    // The length is bounded by the slot before anything is read or allocated.
    if (header.length > this.maxStateBytes) return 'damaged';
    const bs = this.#io.blockSize;
    const data = header.length === 0 ? new Uint8Array(0) : (await this.#io.readBlocks(base + 1, Math.ceil(header.length / bs))).subarray(0, header.length);
    if (!sha256(data).equals(header.digest)) return 'damaged';
    return { header, data: Uint8Array.from(data) };
  }
}
