// A manufactured software TPM in a temporary directory, for the sim tests.
import type { Certificate } from '../../src/crypto/x509.js';
import type { AkAlgorithm } from '../../src/tpm/templates.js';
import { openSoftwareTpm, type SoftwareTpmDevice } from '../../src/tpm/sim/device.js';
import { manufactureSoftwareTpm } from '../../src/tpm/sim/manufacturer-ca.js';
import type { EkAlgorithm } from '../../src/tpm/auth-device.js';
import { tempDir } from '../support/system.js';

export interface SimFixture {
  readonly dir: string;
  readonly statePath: string;
  readonly caCertificate: Certificate;
  readonly device: SoftwareTpmDevice;
  /** Another device over the same state file (a "reboot" of the node process). */
  reopen(akAlgorithm?: AkAlgorithm): SoftwareTpmDevice;
  dispose(): Promise<void>;
}

export async function manufacturedSim(options: { algorithms?: readonly EkAlgorithm[]; akAlgorithm?: AkAlgorithm } = {}): Promise<SimFixture> {
  const tmp = tempDir('tl-sim-');
  const made = await manufactureSoftwareTpm(tmp.path, options.algorithms === undefined ? {} : { algorithms: options.algorithms });
  const open = (ak?: AkAlgorithm): SoftwareTpmDevice => openSoftwareTpm(made.statePath, ak === undefined ? {} : { akAlgorithm: ak });
  const device = open(options.akAlgorithm);
  await device.powerOn();
  return {
    dir: tmp.path,
    statePath: made.statePath,
    caCertificate: made.caCertificate,
    device,
    reopen: open,
    dispose: async () => {
      await device.powerOff();
      tmp.dispose();
    },
  };
}
