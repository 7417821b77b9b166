// The auth device as the agent uses it: always an AuthDevice. For a TPM-like backend
// that is the hypervisor-mediated handle. For the storage-only pci-nvstore the agent
// runs the TPM engine itself (claim 2: "the mini-domain performs the crypto"), its state
// on the device's blocks through the driver, its PCRs the platform's, which the
// hypervisor keeps and measures (the engine's TPM2_Startup cannot reset them).
import type { AuthDevice } from '../../tpm/auth-device.js';
import type { PcrBankLike } from '../../tpm/pcr-bank.js';
import { SoftwareTpmDevice } from '../../tpm/sim/device.js';
import { BlockStateStore } from '../../tpm/nvstore/state-store.js';
import type { MiniDomainCapability, PlatformPcrPort } from '../hypervisor/index.js';
import { NvStoreDriver } from './nvstore-driver.js';

/** The platform PCRs as the engine's bank: reads and extends go to the hypervisor; reset is the platform's, not the engine's. */
function platformBank(port: PlatformPcrPort): PcrBankLike {
  return {
    extend: (index, digest) => port.extend(index, digest),
    read: (index) => Buffer.from(port.read([index]).get(index) ?? []),
    reset: () => undefined,
  };
}

/** Opens the mini-domain's auth device, ready for use. */
export async function openMiniDomainDevice(cap: MiniDomainCapability): Promise<AuthDevice> {
  const held = cap.authDevice;
  if (held.kind === 'tpm') return held.device;
  const driver = NvStoreDriver.probe(cap, held);
  const device = new SoftwareTpmDevice({
    store: new BlockStateStore(driver),
    pcrs: platformBank(held.pcrs),
    kind: 'pci-nvstore',
    description: `TPM engine in the mini-domain over pci-nvstore ${held.bdf}`,
  });
  // Loads the engine's state from the device (the engine's own TPM2_Startup).
  await device.powerOn();
  return device;
}
