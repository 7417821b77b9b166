// The auth device as the platform sees it: a CRB-style control area behind its MMIO BAR
// and a bus master that fetches commands and stores responses by DMA with its own
// requester id, so every byte it moves is translated by the IOMMU through the page
// table of whichever domain owns it (the mini-domain, or nobody: quarantine faults).
import { TrustlaunchError } from '../../../protocol/errors.js';
import type { AttestationKey, AuthDevice, EkAlgorithm, NvIndexAttributes } from '../../../tpm/auth-device.js';
import type { DeviceSlot } from '../device-slot.js';
import type { DmaResult, DmaTransfer } from '../iommu.js';
import type { MmioDeviceModel, MmioSize } from '../mmio.js';
import type { MmioBar, SourceId } from '../pci.js';
import { CRB, CRB_STS, CRB_WRITABLE } from './crb.js';
import { decodeCall, encodeReply, type DeviceCall, type DeviceReply } from './mailbox-codec.js';

export interface AuthDeviceModelContext {
  readonly sid: SourceId;
  readonly slot: DeviceSlot;
  /** Largest command or response (bytes, including the response's 4-byte length prefix). */
  readonly maxMessageBytes: number;
  dma(transfer: DmaTransfer): DmaResult;
  /** The hypervisor's policy on a call before the device sees it; throws to refuse. */
  screen(call: DeviceCall): void;
  /** Power-on goes through the hypervisor, which must re-measure after a reset. */
  powerOn(): Promise<void>;
}

export class AuthDeviceModel implements MmioDeviceModel {
  readonly #ctx: AuthDeviceModelContext;
  readonly #regs = new Map<number, number>();
  #sts: number = CRB_STS.IDLE;
  #inflight: Promise<void> | undefined;

  constructor(ctx: AuthDeviceModelContext) {
    this.#ctx = ctx;
  }

  read(bar: MmioBar, offset: number, size: MmioSize): number {
    if (bar.index !== 0 || size !== 4) return 0;
    if (offset === CRB.CTRL_START) return this.#inflight === undefined ? 0 : 1;
    if (offset === CRB.CTRL_STS) return this.#sts;
    return this.#regs.get(offset) ?? 0;
  }

  write(bar: MmioBar, offset: number, size: MmioSize, value: number): void {
    if (bar.index !== 0 || size !== 4 || !CRB_WRITABLE.includes(offset)) return;
    if (offset === CRB.CTRL_START) {
      if ((value & 1) === 1 && this.#inflight === undefined) this.#inflight = this.#execute().finally(() => (this.#inflight = undefined));
      return;
    }
    this.#regs.set(offset, value);
  }

  /** Settles when the command in flight (if any) has completed: the driver's wait for CTRL_START = 0. */
  completion(): Promise<void> {
    return this.#inflight ?? Promise.resolve();
  }

  snapshot(): unknown {
    return { regs: [...this.#regs].sort(([a], [b]) => a - b), sts: this.#sts, busy: this.#inflight !== undefined };
  }

  /** Never rejects: whatever the programmed registers hold, a failed transfer only sets tpmSts. */
  async #execute(): Promise<void> {
    this.#sts = 0;
    try {
      this.#sts = CRB_STS.IDLE | ((await this.#transfer()) ? 0 : CRB_STS.FATAL);
    } catch {
      this.#sts = CRB_STS.IDLE | CRB_STS.FATAL;
    }
  }

  /** Fetch, perform, store. False when a DMA faulted or the registers describe no usable buffer. */
  async #transfer(): Promise<boolean> {
    const reg = (o: number): number => this.#regs.get(o) ?? 0;
    const cmdAddress = reg(CRB.CTRL_CMD_HADDR) * 2 ** 32 + reg(CRB.CTRL_CMD_LADDR);
    const rspAddress = reg(CRB.CTRL_RSP_HADDR) * 2 ** 32 + reg(CRB.CTRL_RSP_LADDR);
    const cmdSize = reg(CRB.CTRL_CMD_SIZE);
    const rspSize = Math.min(reg(CRB.CTRL_RSP_SIZE), this.#ctx.maxMessageBytes);
    if (cmdSize < 1 || cmdSize > this.#ctx.maxMessageBytes || rspSize < 8 || !Number.isSafeInteger(cmdAddress) || !Number.isSafeInteger(rspAddress)) return false;
    const fetched = this.#ctx.dma({ sid: this.#ctx.sid, address: cmdAddress, kind: 'read', length: cmdSize });
    if (!fetched.ok) return false;
    const reply = await this.#perform(fetched.data);
    let body = encodeReply(reply);
    if (body.length + 4 > rspSize) body = encodeReply({ ok: false, error: new TrustlaunchError('BODY_TOO_LARGE', `the response (${body.length} bytes) exceeds the response buffer`) });
    const framed = Buffer.alloc(4 + body.length);
    framed.writeUInt32LE(body.length, 0);
    body.copy(framed, 4);
    return this.#ctx.dma({ sid: this.#ctx.sid, address: rspAddress, kind: 'write', data: framed }).ok;
  }

  async #perform(command: Uint8Array): Promise<DeviceReply> {
    try {
      const call = decodeCall(command, this.#ctx.maxMessageBytes);
      this.#ctx.screen(call);
      const value = call.method === 'powerOn' ? await this.#ctx.powerOn() : await this.#ctx.slot.run((device) => invoke(device, call));
      return { ok: true, value };
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e : new Error(String(e)) };
    }
  }
}

/** Calls the backend with arguments checked for shape (they came through mini-domain memory). */
function invoke(d: AuthDevice, call: DeviceCall): Promise<unknown> {
  const a = call.args;
  const int = (i: number): number => {
    const v = a[i];
    if (!Number.isSafeInteger(v)) throw new TypeError(`argument ${i} of ${call.method} must be an integer`);
    return v as number;
  };
  const bytes = (i: number): Uint8Array => {
    const v = a[i];
    if (!(v instanceof Uint8Array)) throw new TypeError(`argument ${i} of ${call.method} must be bytes`);
    return v;
  };
  const obj = <T>(i: number): T => {
    const v = a[i];
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`argument ${i} of ${call.method} must be an object`);
    return v as T;
  };
  const ints = (i: number): number[] => {
    const v = a[i];
    if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x))) throw new TypeError(`argument ${i} of ${call.method} must be a list of integers`);
    return v as number[];
  };
  const ek = (i: number): EkAlgorithm => a[i] as EkAlgorithm;
  switch (call.method) {
    case 'powerOn':
      return d.powerOn();
    case 'powerOff':
      return d.powerOff();
    case 'endorsements':
      return d.endorsements();
    case 'ensureAttestationKey':
      return d.ensureAttestationKey(ek(0));
    case 'activateCredential':
      return d.activateCredential(obj<AttestationKey>(0), ek(1), bytes(2), bytes(3));
    case 'quote':
      return d.quote(obj<AttestationKey>(0), ints(1), bytes(2));
    case 'pcrExtend':
      return d.pcrExtend(int(0), bytes(1));
    case 'pcrRead':
      return d.pcrRead(ints(0));
    case 'nvDefine':
      return d.nvDefine(int(0), obj<NvIndexAttributes>(1));
    case 'nvWrite':
      return a[2] === undefined ? d.nvWrite(int(0), bytes(1)) : d.nvWrite(int(0), bytes(1), int(2));
    case 'nvRead':
      return d.nvRead(int(0));
    case 'nvSize':
      return d.nvSize(int(0));
    case 'nvWriteLock':
      return d.nvWriteLock(int(0));
    case 'nvUndefine':
      return d.nvUndefine(int(0));
  }
}
