// The node's auth device by configuration (DESIGN.md §3.4): manufacturing it at
// `node init` and opening it for the hypervisor at `node serve`. Everything lives in
// DIR/device/, which stands for the device's own storage (its NV, its flash): only the
// trusted node process opens it, and only the hypervisor holds what it opens.
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { TrustlaunchError } from '../protocol/errors.js';
import { openSoftwareTpm } from '../tpm/sim/device.js';
import { MANUFACTURER_FILES, manufactureSoftwareTpm } from '../tpm/sim/manufacturer-ca.js';
import { manufactureNvStore, NVSTORE_FILES } from '../tpm/nvstore/manufacture.js';
import { openMediumFile } from '../tpm/nvstore/medium.js';
import { isManufactured, manufactureSwtpm, swtpmLayout } from '../tpm/swtpm/manufacture.js';
import { tpmDeviceFromSpec } from '../tpm/swtpm/device-spec.js';
import type { HypervisorBootOptions } from './hypervisor/index.js';
import type { NodeConfig, NodeDeviceKind } from './config.js';

export interface ManufacturedDevice {
  readonly kind: NodeDeviceKind;
  /** Certificate files (PEM) a CA must trust as endorsement roots for this node's EK. */
  readonly endorsementRoots: readonly string[];
}

/** Manufactures the device of `kind` in `deviceDir` (refusing to replace one unless `overwrite`). */
export async function manufactureDevice(kind: NodeDeviceKind, deviceDir: string, overwrite = false): Promise<ManufacturedDevice> {
  switch (kind) {
    case 'sim':
      await manufactureSoftwareTpm(deviceDir, { overwrite });
      return { kind, endorsementRoots: [join(deviceDir, MANUFACTURER_FILES.certificate)] };
    case 'pci-nvstore':
      await manufactureNvStore(deviceDir, { overwrite });
      return { kind, endorsementRoots: [join(deviceDir, MANUFACTURER_FILES.certificate)] };
    case 'swtpm': {
      const layout = swtpmLayout(deviceDir);
      if ((await isManufactured(layout)) && !overwrite) throw new TrustlaunchError('CONFLICT', `${deviceDir} already holds a swtpm; remanufacturing needs --force`);
      await manufactureSwtpm(layout);
      // swtpm_localca signs EK certificates with an intermediate the EK certificate does not carry: a CA needs both.
      return { kind, endorsementRoots: [layout.rootCertificate, layout.issuerCertificate] };
    }
    case 'tpm':
      // A hardware TPM comes manufactured; its vendor's EK root is the endorsement root.
      return { kind, endorsementRoots: [] };
  }
}

/** The hypervisor's device option for the configured device: it opens the device itself. */
export function deviceBootOptions(config: NodeConfig, deviceDir: string): Pick<HypervisorBootOptions, 'openAuthDevice' | 'openNvStore'> {
  const kind = config.device.kind;
  switch (kind) {
    case 'sim': {
      const state = join(deviceDir, MANUFACTURER_FILES.state);
      if (!existsSync(state)) throw new TrustlaunchError('NOT_FOUND', `no software TPM at ${state} (run \`trustlaunch node init\`)`);
      return { openAuthDevice: () => openSoftwareTpm(state) };
    }
    case 'pci-nvstore':
      return { openNvStore: () => openMediumFile(join(deviceDir, NVSTORE_FILES.medium)) };
    case 'swtpm':
      return { openAuthDevice: () => tpmDeviceFromSpec('swtpm', { nodeDir: deviceDir }) };
    case 'tpm':
      return { openAuthDevice: () => tpmDeviceFromSpec(`tpm:${config.device.path ?? '/dev/tpmrm0'}`, { nodeDir: deviceDir }) };
  }
}
