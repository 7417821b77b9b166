// The `tpm` auth device (`--device tpm:/dev/tpmrm0`): a hardware TPM behind the kernel's
// resource manager. The platform firmware has already started it, so powerOn's
// TPM2_Startup(CLEAR) answers TPM_RC_INITIALIZE and the PCRs keep their boot values;
// powerOff only releases the device (the OS, not trustlaunch, owns the TPM's power state).
import { TpmClient } from '../client/client.js';
import { DEFAULT_TPM_DEVICE, DeviceTransport } from '../client/device-transport.js';
import { startupClear } from '../client/commands/startup.js';
import { TpmAuthDevice, type TpmAuthDeviceOptions } from './tpm-auth-device.js';

export interface HardwareTpmAuthDeviceOptions extends TpmAuthDeviceOptions {
  /** Default /dev/tpmrm0. */
  readonly path?: string;
  /** Per-command timeout (default 120 s: RSA key generation on a slow TPM). */
  readonly timeoutMs?: number;
}

export class HardwareTpmAuthDevice extends TpmAuthDevice {
  readonly kind = 'tpm' as const;
  readonly path: string;
  readonly description: string;
  readonly #timeoutMs: number;

  constructor(options: HardwareTpmAuthDeviceOptions = {}) {
    super(options);
    this.path = options.path ?? DEFAULT_TPM_DEVICE;
    this.description = `TPM 2.0 at ${this.path}`;
    this.#timeoutMs = options.timeoutMs ?? 120_000;
  }

  protected async connect(): Promise<TpmClient> {
    const client = new TpmClient(new DeviceTransport(this.path), { timeoutMs: this.#timeoutMs });
    try {
      await startupClear(client);
    } catch (e) {
      await client.close();
      throw e;
    }
    return client;
  }

  protected async disconnect(client: TpmClient): Promise<void> {
    await client.close();
  }
}
