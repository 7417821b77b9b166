// The pci-nvstore device's persistent medium: one file of fixed size standing for the
// device's flash (mode 0600: it holds the node's keys). Only the hypervisor's device model
// opens it; the mini-domain reaches its blocks through MMIO and DMA. The file is refused
// (FILE_INSECURE) when it is a symlink, not a regular file, owned by someone else, or open
// to group or others, as readSecretFile refuses secret files.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { TrustlaunchError } from '../../protocol/errors.js';
import { NVSTORE_BLOCK_SIZE, checkBlockRange, type BlockIo } from './block-io.js';

/** Bounds of a medium: 64 KiB .. 64 MiB. */
export const MIN_MEDIUM_BLOCKS = 128;
export const MAX_MEDIUM_BLOCKS = 128 * 1024;
/** The default manufactured size: 1 MiB. */
export const DEFAULT_MEDIUM_BLOCKS = 2048;

export interface BlockMedium extends BlockIo {
  readonly description: string;
  close(): Promise<void>;
}

/** Creates a zero-filled medium file of `blocks` blocks (O_EXCL unless `overwrite`). */
export async function createMediumFile(path: string, blocks = DEFAULT_MEDIUM_BLOCKS, overwrite = false): Promise<void> {
  if (!Number.isSafeInteger(blocks) || blocks < MIN_MEDIUM_BLOCKS || blocks > MAX_MEDIUM_BLOCKS) throw new RangeError(`a medium has ${MIN_MEDIUM_BLOCKS}..${MAX_MEDIUM_BLOCKS} blocks`);
  const flags = constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | (overwrite ? constants.O_TRUNC : constants.O_EXCL);
  let handle: FileHandle;
  try {
    handle = await open(path, flags, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new TrustlaunchError('CONFLICT', `${path} already holds a pci-nvstore medium; remanufacturing needs overwrite`);
    throw e;
  }
  try {
    await handle.chmod(0o600);
    await handle.truncate(0);
    await handle.truncate(blocks * NVSTORE_BLOCK_SIZE);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Opens an existing medium file; its size fixes the block count. */
export async function openMediumFile(path: string): Promise<BlockMedium> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new TrustlaunchError('FILE_INSECURE', `refusing to open the pci-nvstore medium through the symlink ${path}`);
    throw e;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new TrustlaunchError('FILE_INSECURE', `${path} is not a regular file`);
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw new TrustlaunchError('FILE_INSECURE', `${path} is owned by uid ${st.uid}, not by this user`);
    if ((st.mode & 0o077) !== 0) throw new TrustlaunchError('FILE_INSECURE', `${path} has mode ${(st.mode & 0o777).toString(8)}; the device medium holds keys (chmod 600)`);
    const blocks = st.size / NVSTORE_BLOCK_SIZE;
    if (!Number.isInteger(blocks) || blocks < MIN_MEDIUM_BLOCKS || blocks > MAX_MEDIUM_BLOCKS) {
      throw new TrustlaunchError('NVSTORE_CORRUPT', `${path} is ${st.size} bytes: not a pci-nvstore medium of ${MIN_MEDIUM_BLOCKS}..${MAX_MEDIUM_BLOCKS} blocks of ${NVSTORE_BLOCK_SIZE}`);
    }
    return new FileMedium(handle, path, blocks);
  } catch (e) {
    await handle.close();
    throw e;
  }
}

class FileMedium implements BlockMedium {
  readonly blockSize = NVSTORE_BLOCK_SIZE;
  readonly blockCount: number;
  readonly description: string;
  readonly #handle: FileHandle;
  #closed = false;

  constructor(handle: FileHandle, path: string, blocks: number) {
    this.#handle = handle;
    this.blockCount = blocks;
    this.description = `pci-nvstore medium ${path} (${blocks} blocks of ${NVSTORE_BLOCK_SIZE})`;
  }

  async readBlocks(lba: number, count: number): Promise<Uint8Array> {
    this.#open();
    checkBlockRange(this, lba, count);
    const out = Buffer.alloc(count * this.blockSize);
    const { bytesRead } = await this.#handle.read(out, 0, out.length, lba * this.blockSize);
    if (bytesRead !== out.length) throw new TrustlaunchError('NVSTORE_CORRUPT', `short read of ${bytesRead} bytes at block ${lba}`);
    return out;
  }

  async writeBlocks(lba: number, data: Uint8Array): Promise<void> {
    this.#open();
    if (data.length % this.blockSize !== 0) throw new RangeError(`a block write has a multiple of ${this.blockSize} bytes`);
    checkBlockRange(this, lba, data.length / this.blockSize);
    await this.#handle.write(data, 0, data.length, lba * this.blockSize);
  }

  async flush(): Promise<void> {
    this.#open();
    await this.#handle.datasync();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
  }

  #open(): void {
    if (this.#closed) throw new TrustlaunchError('DEVICE_NOT_READY', 'the pci-nvstore medium is closed');
  }
}
