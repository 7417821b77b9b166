// `--device swtpm` and `--device tpm[:PATH]` (DESIGN.md §3.4): the TPM-backed auth devices.
import type { AkAlgorithm } from '../templates.js';
import { HardwareTpmAuthDevice } from './hardware-device.js';
import { SwtpmAuthDevice } from './swtpm-device.js';
import type { TpmAuthDevice } from './tpm-auth-device.js';

export interface TpmDeviceSpecOptions {
  /** The node's directory (where `swtpm` keeps its state and local CA). */
  readonly nodeDir: string;
  readonly akAlgorithm?: AkAlgorithm;
}

/** True for the specs this module builds: `swtpm`, `tpm`, `tpm:/dev/…`. */
export function isTpmDeviceSpec(spec: string): boolean {
  return spec === 'swtpm' || spec === 'tpm' || spec.startsWith('tpm:');
}

/** The device for `spec`; a TypeError for anything else (the caller's option is wrong, nothing was attacked). */
export function tpmDeviceFromSpec(spec: string, options: TpmDeviceSpecOptions): TpmAuthDevice {
  const ak = options.akAlgorithm === undefined ? {} : { akAlgorithm: options.akAlgorithm };
  if (spec === 'swtpm') return new SwtpmAuthDevice({ nodeDir: options.nodeDir, ...ak });
  if (spec === 'tpm') return new HardwareTpmAuthDevice(ak);
  if (spec.startsWith('tpm:')) {
    const path = spec.slice(4);
    if (!path.startsWith('/dev/')) throw new TypeError(`--device tpm:PATH wants a device under /dev, got ${JSON.stringify(path)}`);
    return new HardwareTpmAuthDevice({ path, ...ak });
  }
  throw new TypeError(`unknown TPM device ${JSON.stringify(spec)}: use swtpm or tpm:/dev/tpmrm0`);
}
