// The mini-domain's auth device: an AuthDevice whose every call is a CRB transaction the
// mini-domain performs itself. It writes the command into its own memory, programs the
// device's registers through MMIO (the hypervisor's grant check for this domain and
// BDF), starts it, and reads the response the device stored by DMA through the
// mini-domain's own I/O page table. Nothing here holds the device object.
import { TrustlaunchError } from '../../../protocol/errors.js';
import type { AttestationKey, AuthDevice, AuthDeviceKind, EkAlgorithm, Endorsement, NvIndexAttributes, QuoteResult } from '../../../tpm/auth-device.js';
import type { DomainId } from '../domain-id.js';
import type { MmioAccess } from '../mmio.js';
import { CRB, CRB_STS } from './crb.js';
import { decodeReply, encodeCall, type AuthDeviceMethod } from './mailbox-codec.js';

export interface DeviceHandleContext {
  readonly domainId: DomainId;
  readonly kind: AuthDeviceKind;
  readonly description: string;
  /** Base of the device's control area (BAR 0). */
  readonly mmioBase: number;
  /** Guest-physical (= IOVA, identity-mapped) addresses of the two buffers and their size. */
  readonly commandBuffer: number;
  readonly responseBuffer: number;
  readonly bufferBytes: number;
  isRunning(): boolean;
  readMemory(gpa: number, length: number): Uint8Array;
  writeMemory(gpa: number, bytes: Uint8Array): void;
  mmio(access: MmioAccess): number;
  /** Waits for CTRL_START to clear (the model's stand-in for polling or the interrupt). */
  completion(): Promise<void>;
}

export class MediatedAuthDevice implements AuthDevice {
  readonly kind: AuthDeviceKind;
  readonly description: string;
  readonly #ctx: DeviceHandleContext;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(ctx: DeviceHandleContext) {
    this.#ctx = ctx;
    this.kind = ctx.kind;
    this.description = `${ctx.description} (mediated for domain ${ctx.domainId})`;
  }

  powerOn(): Promise<void> {
    return this.#call('powerOn', []) as Promise<void>;
  }
  powerOff(): Promise<void> {
    return this.#call('powerOff', []) as Promise<void>;
  }
  endorsements(): Promise<readonly Endorsement[]> {
    return this.#call('endorsements', []) as Promise<readonly Endorsement[]>;
  }
  ensureAttestationKey(ek: EkAlgorithm): Promise<AttestationKey> {
    return this.#call('ensureAttestationKey', [ek]) as Promise<AttestationKey>;
  }
  activateCredential(ak: AttestationKey, ek: EkAlgorithm, credentialBlob: Uint8Array, encryptedSecret: Uint8Array): Promise<Uint8Array> {
    return this.#call('activateCredential', [plainKey(ak), ek, credentialBlob, encryptedSecret]) as Promise<Uint8Array>;
  }
  quote(ak: AttestationKey, pcrs: readonly number[], qualifyingData: Uint8Array): Promise<QuoteResult> {
    return this.#call('quote', [plainKey(ak), [...pcrs], qualifyingData]) as Promise<QuoteResult>;
  }
  pcrExtend(pcr: number, digest: Uint8Array): Promise<void> {
    return this.#call('pcrExtend', [pcr, digest]) as Promise<void>;
  }
  pcrRead(pcrs: readonly number[]): Promise<ReadonlyMap<number, Uint8Array>> {
    return this.#call('pcrRead', [[...pcrs]]) as Promise<ReadonlyMap<number, Uint8Array>>;
  }
  nvDefine(index: number, attributes: NvIndexAttributes): Promise<void> {
    return this.#call('nvDefine', [index, { ...attributes }]) as Promise<void>;
  }
  nvWrite(index: number, data: Uint8Array, offset?: number): Promise<void> {
    return this.#call('nvWrite', [index, data, offset]) as Promise<void>;
  }
  nvRead(index: number): Promise<Uint8Array> {
    return this.#call('nvRead', [index]) as Promise<Uint8Array>;
  }
  nvSize(index: number): Promise<number | undefined> {
    return this.#call('nvSize', [index]) as Promise<number | undefined>;
  }
  nvWriteLock(index: number): Promise<void> {
    return this.#call('nvWriteLock', [index]) as Promise<void>;
  }
  nvUndefine(index: number): Promise<void> {
    return this.#call('nvUndefine', [index]) as Promise<void>;
  }

  /** One CRB transaction at a time, in call order. */
  #call(method: AuthDeviceMethod, args: unknown[]): Promise<unknown> {
    const result = this.#tail.then(() => this.#transact(method, args));
    this.#tail = result.catch(() => undefined);
    return result;
  }

  async #transact(method: AuthDeviceMethod, args: unknown[]): Promise<unknown> {
    const c = this.#ctx;
    if (!c.isRunning()) throw new TrustlaunchError('DOMAIN_STATE_INVALID', `domain ${c.domainId} is not running; its device handle is dead`);
    const command = encodeCall({ method, args });
    if (command.length > c.bufferBytes) throw new TrustlaunchError('BODY_TOO_LARGE', `the ${method} command (${command.length} bytes) exceeds the command buffer`);
    c.writeMemory(c.commandBuffer, command);
    const reg = (offset: number, value: number): void => void c.mmio({ address: c.mmioBase + offset, size: 4, kind: 'write', value });
    reg(CRB.CTRL_CMD_SIZE, command.length);
    reg(CRB.CTRL_CMD_LADDR, c.commandBuffer % 2 ** 32);
    reg(CRB.CTRL_CMD_HADDR, Math.floor(c.commandBuffer / 2 ** 32));
    reg(CRB.CTRL_RSP_SIZE, c.bufferBytes);
    reg(CRB.CTRL_RSP_LADDR, c.responseBuffer % 2 ** 32);
    reg(CRB.CTRL_RSP_HADDR, Math.floor(c.responseBuffer / 2 ** 32));
    reg(CRB.CTRL_START, 1);
    await c.completion();
    const sts = c.mmio({ address: c.mmioBase + CRB.CTRL_STS, size: 4, kind: 'read' });
    if ((sts & CRB_STS.FATAL) !== 0) {
      throw new TrustlaunchError('IOMMU_FAULT', `the auth device could not reach domain ${c.domainId}'s command or response buffer`);
    }
    const length = Buffer.from(c.readMemory(c.responseBuffer, 4)).readUInt32LE(0);
    if (length > c.bufferBytes - 4) throw new TrustlaunchError('MALFORMED_REQUEST', 'device mailbox: response length out of bounds');
    const reply = decodeReply(c.readMemory(c.responseBuffer + 4, length), c.bufferBytes);
    if (!reply.ok) throw reply.error;
    return reply.value;
  }
}

function plainKey(ak: AttestationKey): AttestationKey {
  return { handle: ak.handle, public: ak.public, name: ak.name };
}
