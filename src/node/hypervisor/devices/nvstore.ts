// The pci-nvstore auth device as the platform sees it (claim 2's "PCI device that stores
// data persistently"): a register block behind its MMIO BAR and a bus master that moves
// whole blocks between its medium and memory by DMA with its own requester id. It has no
// keys, no PCRs and no commands beyond read, write and flush; everything cryptographic
// happens in the mini-domain that drives it. Like every bus master, its DMA is translated
// by the IOMMU through its owner's I/O page table: quarantined, every transfer faults.
import type { BlockMedium } from '../../../tpm/nvstore/medium.js';
import type { DmaResult, DmaTransfer } from '../iommu.js';
import type { MmioDeviceModel, MmioSize } from '../mmio.js';
import type { MmioBar, SourceId } from '../pci.js';

/** Register offsets in BAR 0. */
export const NVS = {
  /** RO: 'NVS1'. */
  ID: 0x00,
  BLOCK_SIZE: 0x04,
  BLOCK_COUNT: 0x08,
  /** RO: largest NVS_COUNT one command may move. */
  MAX_BLOCKS: 0x0c,
  LBA: 0x10,
  COUNT: 0x14,
  DMA_LO: 0x18,
  DMA_HI: 0x1c,
  /** WO: a command code starts a transfer when the device is idle. */
  CMD: 0x20,
  /** RO: NVS_STS bits. */
  STS: 0x24,
} as const;

export const NVS_ID_VALUE = 0x4e565331;
export const NVS_CMD = { READ: 1, WRITE: 2, FLUSH: 3 } as const;
/** STS: BUSY while a command runs; ERROR for a bad command, range or medium failure; DMA_FAULT when the IOMMU refused a transfer. */
export const NVS_STS = { BUSY: 1 << 0, ERROR: 1 << 1, DMA_FAULT: 1 << 2 } as const;

const WRITABLE: readonly number[] = [NVS.LBA, NVS.COUNT, NVS.DMA_LO, NVS.DMA_HI];

export interface NvStoreModelContext {
  readonly sid: SourceId;
  readonly medium: BlockMedium;
  /** Largest transfer in blocks. */
  readonly maxBlocks: number;
  dma(transfer: DmaTransfer): DmaResult;
}

export class NvStoreDeviceModel implements MmioDeviceModel {
  readonly #ctx: NvStoreModelContext;
  readonly #regs = new Map<number, number>();
  #sts = 0;
  #inflight: Promise<void> | undefined;

  constructor(ctx: NvStoreModelContext) {
    this.#ctx = ctx;
  }

  read(bar: MmioBar, offset: number, size: MmioSize): number {
    if (bar.index !== 0 || size !== 4) return 0;
    switch (offset) {
      case NVS.ID:
        return NVS_ID_VALUE;
      case NVS.BLOCK_SIZE:
        return this.#ctx.medium.blockSize;
      case NVS.BLOCK_COUNT:
        return this.#ctx.medium.blockCount;
      case NVS.MAX_BLOCKS:
        return this.#ctx.maxBlocks;
      case NVS.STS:
        return this.#sts | (this.#inflight === undefined ? 0 : NVS_STS.BUSY);
      default:
        return this.#regs.get(offset) ?? 0;
    }
  }

  write(bar: MmioBar, offset: number, size: MmioSize, value: number): void {
    if (bar.index !== 0 || size !== 4) return;
    if (offset === NVS.CMD) {
      if (this.#inflight === undefined) this.#inflight = this.#execute(value).finally(() => (this.#inflight = undefined));
      return;
    }
    if (WRITABLE.includes(offset)) this.#regs.set(offset, value);
  }

  /** Settles when the command in flight (if any) has completed: the driver's wait for BUSY to clear. */
  completion(): Promise<void> {
    return this.#inflight ?? Promise.resolve();
  }

  snapshot(): unknown {
    return { regs: [...this.#regs].sort(([a], [b]) => a - b), sts: this.#sts, busy: this.#inflight !== undefined };
  }

  async close(): Promise<void> {
    await this.completion();
    await this.#ctx.medium.close();
  }

  /** Never rejects: whatever the registers hold, a failure only sets status bits. */
  async #execute(command: number): Promise<void> {
    this.#sts = 0;
    try {
      this.#sts = await this.#perform(command);
    } catch {
      this.#sts = NVS_STS.ERROR;
    }
  }

  async #perform(command: number): Promise<number> {
    const { medium } = this.#ctx;
    if (command === NVS_CMD.FLUSH) {
      await medium.flush();
      return 0;
    }
    const reg = (o: number): number => this.#regs.get(o) ?? 0;
    const lba = reg(NVS.LBA);
    const count = reg(NVS.COUNT);
    const address = reg(NVS.DMA_HI) * 2 ** 32 + reg(NVS.DMA_LO);
    if ((command !== NVS_CMD.READ && command !== NVS_CMD.WRITE) || count < 1 || count > this.#ctx.maxBlocks || lba + count > medium.blockCount) return NVS_STS.ERROR;
    const length = count * medium.blockSize;
    if (command === NVS_CMD.READ) {
      const data = await medium.readBlocks(lba, count);
      return this.#ctx.dma({ sid: this.#ctx.sid, address, kind: 'write', data }).ok ? 0 : NVS_STS.DMA_FAULT;
    }
    const fetched = this.#ctx.dma({ sid: this.#ctx.sid, address, kind: 'read', length });
    if (!fetched.ok) return NVS_STS.DMA_FAULT;
    await medium.writeBlocks(lba, fetched.data);
    return 0;
  }
}
