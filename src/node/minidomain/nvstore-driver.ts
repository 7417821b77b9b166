// The mini-domain's driver for the storage-only pci-nvstore device (claim 2). It is guest
// code: it touches the device only through its own MMIO grant (register writes) and has
// the device move blocks by DMA into its own DMA window, which the hypervisor mapped in
// its I/O page table. One command at a time, split to the device's transfer limit.
import { TrustlaunchError } from '../../protocol/errors.js';
import { NVS, NVS_CMD, NVS_ID_VALUE, NVS_STS, type DomainCapability, type NvStoreDevicePort } from '../hypervisor/index.js';
import { checkBlockRange, type BlockIo } from '../../tpm/nvstore/block-io.js';

type Port = Pick<DomainCapability, 'mmio' | 'memory'>;

export class NvStoreDriver implements BlockIo {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly #maxBlocks: number;
  readonly #cap: Port;
  readonly #device: NvStoreDevicePort;
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(cap: Port, device: NvStoreDevicePort, geometry: { blockSize: number; blockCount: number; maxBlocks: number }) {
    this.#cap = cap;
    this.#device = device;
    this.blockSize = geometry.blockSize;
    this.blockCount = geometry.blockCount;
    this.#maxBlocks = geometry.maxBlocks;
  }

  /** Reads the device's identity and geometry from its registers. */
  static probe(cap: Port, device: NvStoreDevicePort): NvStoreDriver {
    const reg = (offset: number): number => cap.mmio({ address: device.mmioBase + offset, size: 4, kind: 'read' });
    if (reg(NVS.ID) !== NVS_ID_VALUE) throw new TrustlaunchError('DEVICE_NOT_READY', `no pci-nvstore device at ${device.bdf}`);
    const blockSize = reg(NVS.BLOCK_SIZE);
    const blockCount = reg(NVS.BLOCK_COUNT);
    const windowBlocks = Math.floor(device.dmaWindow.bytes / Math.max(1, blockSize));
    const maxBlocks = Math.min(reg(NVS.MAX_BLOCKS), windowBlocks);
    if (blockSize < 128 || blockSize > 4096 || blockCount < 1 || maxBlocks < 1) throw new TrustlaunchError('DEVICE_NOT_READY', `the pci-nvstore device reports an unusable geometry`);
    return new NvStoreDriver(cap, device, { blockSize, blockCount, maxBlocks });
  }

  readBlocks(lba: number, count: number): Promise<Uint8Array> {
    checkBlockRange(this, lba, count);
    return this.#serial(async () => {
      const out = new Uint8Array(count * this.blockSize);
      for (let done = 0; done < count; ) {
        const n = Math.min(this.#maxBlocks, count - done);
        await this.#command(NVS_CMD.READ, lba + done, n);
        out.set(this.#cap.memory.read(this.#device.dmaWindow.gpa, n * this.blockSize), done * this.blockSize);
        done += n;
      }
      return out;
    });
  }

  writeBlocks(lba: number, data: Uint8Array): Promise<void> {
    if (data.length % this.blockSize !== 0) throw new RangeError(`a block write has a multiple of ${this.blockSize} bytes`);
    const count = data.length / this.blockSize;
    checkBlockRange(this, lba, count);
    return this.#serial(async () => {
      for (let done = 0; done < count; ) {
        const n = Math.min(this.#maxBlocks, count - done);
        this.#cap.memory.write(this.#device.dmaWindow.gpa, data.subarray(done * this.blockSize, (done + n) * this.blockSize));
        await this.#command(NVS_CMD.WRITE, lba + done, n);
        done += n;
      }
    });
  }

  flush(): Promise<void> {
    return this.#serial(() => this.#command(NVS_CMD.FLUSH, 0, 0));
  }

  async #command(command: number, lba: number, count: number): Promise<void> {
    const base = this.#device.mmioBase;
    const write = (offset: number, value: number): void => void this.#cap.mmio({ address: base + offset, size: 4, kind: 'write', value });
    const gpa = this.#device.dmaWindow.gpa;
    write(NVS.LBA, lba);
    write(NVS.COUNT, count);
    write(NVS.DMA_LO, gpa % 2 ** 32);
    write(NVS.DMA_HI, Math.floor(gpa / 2 ** 32));
    write(NVS.CMD, command);
    await this.#device.completion();
    const sts = this.#cap.mmio({ address: base + NVS.STS, size: 4, kind: 'read' });
    if ((sts & NVS_STS.DMA_FAULT) !== 0) throw new TrustlaunchError('IOMMU_FAULT', `the pci-nvstore device could not reach the DMA window (command ${command}, block ${lba})`);
    if ((sts & NVS_STS.ERROR) !== 0) throw new TrustlaunchError('NVSTORE_IO_ERROR', `the pci-nvstore device failed command ${command} at block ${lba} (+${count})`);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
