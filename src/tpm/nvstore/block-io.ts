// The storage-only auth device of claim 2 ("a PCI device that stores data persistently")
// seen as what it is: fixed-size blocks that can be read, written and flushed, nothing
// else. Both the device's own medium (file-backed, medium.ts) and the mini-domain's driver
// that reaches it through MMIO and DMA implement this interface, so the TPM state layout
// (state-store.ts) runs unchanged on either side.

export interface BlockIo {
  /** Bytes per block (512). */
  readonly blockSize: number;
  readonly blockCount: number;
  /** Reads `count` blocks starting at `lba`. */
  readBlocks(lba: number, count: number): Promise<Uint8Array>;
  /** Writes whole blocks starting at `lba` (`data.length` a multiple of blockSize). */
  writeBlocks(lba: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
}

/** The one block size the device speaks. */
export const NVSTORE_BLOCK_SIZE = 512;

/** RangeError unless [lba, lba + count) lies within the device (a caller bug, not an attack). */
export function checkBlockRange(io: Pick<BlockIo, 'blockCount'>, lba: number, count: number): void {
  if (!Number.isSafeInteger(lba) || !Number.isSafeInteger(count) || lba < 0 || count < 1 || lba + count > io.blockCount) {
    throw new RangeError(`blocks [${lba}, +${count}) outside a ${io.blockCount}-block device`);
  }
}
