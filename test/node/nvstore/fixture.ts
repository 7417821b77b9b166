// A hypervisor whose auth device is the storage-only pci-nvstore: a medium manufactured
// in a temporary directory (EK + certificate from a manufacturer CA made there), opened
// by the hypervisor itself. The test keeps the medium's path only to play the outside
// world (compare its bytes before and after an attack).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Digest, type Digest } from '../../../src/protocol/digest.js';
import { bootHypervisor, type HypervisorBootOptions, type HypervisorNode } from '../../../src/node/hypervisor/index.js';
import { manufactureNvStore } from '../../../src/tpm/nvstore/manufacture.js';
import { openMediumFile } from '../../../src/tpm/nvstore/medium.js';
import { parseCertificate, type Certificate } from '../../../src/crypto/x509.js';
import { tempDir } from '../../support/system.js';
import { FIRMWARE, HYPERVISOR_IMAGE } from '../hypervisor/node-fixture.js';

export interface NvStoreNode {
  readonly node: HypervisorNode;
  readonly mediumPath: string;
  readonly manufacturer: Certificate;
  readonly image: Uint8Array;
  readonly digest: Digest;
  /** Boots a fresh hypervisor on the same medium (a node reboot). */
  reboot(options?: Partial<HypervisorBootOptions>): Promise<HypervisorNode>;
  mediumDigest(): Digest;
  dispose(): Promise<void>;
}

export async function bootNvStoreNode(options: Partial<Omit<HypervisorBootOptions, 'openAuthDevice' | 'openNvStore' | 'bootConfig' | 'platform'>> = {}): Promise<NvStoreNode> {
  const dir = tempDir('tl-nvstore-');
  const made = await manufactureNvStore(dir.path, { algorithms: ['ecc-p256'] });
  const image = randomBytes(2 * 4096 + 9);
  const digest = sha256Digest(image);
  const boot = (o: Partial<HypervisorBootOptions>): Promise<HypervisorNode> =>
    bootHypervisor({
      ...options,
      ...o,
      bootConfig: { v: 1, nodeId: 'node-nv', launchPolicy: { miniDomainDigest: digest } },
      platform: { firmware: FIRMWARE, hypervisor: HYPERVISOR_IMAGE },
      openNvStore: () => openMediumFile(made.mediumPath),
    });
  let node = await boot({});
  return {
    get node() {
      return node;
    },
    mediumPath: made.mediumPath,
    manufacturer: parseCertificate(readFileSync(join(dir.path, 'manufacturer-ca.pem'), 'utf8')),
    image,
    digest,
    reboot: async (o = {}) => {
      await node.shutdown();
      node = await boot(o);
      return node;
    },
    mediumDigest: () => sha256Digest(readFileSync(made.mediumPath)),
    dispose: async () => {
      await node.shutdown().catch(() => undefined);
      dir.dispose();
    },
  };
}
