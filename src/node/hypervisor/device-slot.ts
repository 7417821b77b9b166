// The one place the auth device object lives. Every use of it (the hypervisor's own
// measurements, and the mini-domain's commands arriving through the mediated interface)
// runs through `run`, one at a time and in order, as a TPM executes one command at a time;
// so an event-log append and its PCR extend can never interleave with anything else.
import type { AuthDevice } from '../../tpm/auth-device.js';

export class DeviceSlot {
  readonly #device: AuthDevice;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(device: AuthDevice) {
    this.#device = device;
  }

  get kind(): AuthDevice['kind'] {
    return this.#device.kind;
  }

  get description(): string {
    return this.#device.description;
  }

  /** Runs `fn` with the device after every earlier `run` has settled. */
  run<T>(fn: (device: AuthDevice) => Promise<T>): Promise<T> {
    const result = this.#tail.then(() => fn(this.#device));
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
