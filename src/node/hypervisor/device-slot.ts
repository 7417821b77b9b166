// The one holder of the device that keeps the platform's PCRs. Every use of it (the
// hypervisor's own measurements, and the mini-domain's commands arriving through the
// mediated interface) runs through `run`, one at a time and in order, as a TPM executes
// one command at a time; so an event-log append and its PCR extend can never interleave
// with anything else. With a TPM-like backend it holds the AuthDevice; with pci-nvstore,
// which has no PCRs, it holds the hypervisor's own PCR bank (devices/platform-pcrs.ts).
import type { AuthDevice } from '../../tpm/auth-device.js';

/** What measured boot needs of whatever keeps the platform PCRs. */
export type PcrHolder = Pick<AuthDevice, 'kind' | 'description' | 'powerOn' | 'powerOff' | 'pcrExtend' | 'pcrRead'>;

export class DeviceSlot<D extends PcrHolder = AuthDevice> {
  readonly #device: D;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(device: D) {
    this.#device = device;
  }

  get kind(): AuthDevice['kind'] {
    return this.#device.kind;
  }

  get description(): string {
    return this.#device.description;
  }

  /** Runs `fn` with the device after every earlier `run` has settled. */
  run<T>(fn: (device: D) => Promise<T>): Promise<T> {
    const result = this.#tail.then(() => fn(this.#device));
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
