// A hypervisor booted on the real software TPM (`sim`), manufactured once per process
// with an ECC P-256 EK and a real EK certificate. The test keeps its own reference to the
// device only to play the outside world (a power cycle); production code never does.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createSelfSignedCa, issueCertificate } from '../../../src/crypto/x509/issue.js';
import { sha256Digest, type Digest } from '../../../src/protocol/digest.js';
import { bootHypervisor, type HypervisorBootOptions, type HypervisorNode, type MiniDomainCapability } from '../../../src/node/hypervisor/index.js';
import type { AuthDevice } from '../../../src/tpm/auth-device.js';
import { SoftwareTpmDevice } from '../../../src/tpm/sim/device.js';
import { manufactureTpm } from '../../../src/tpm/sim/manufacture.js';
import { MemoryStateStore } from '../../../src/tpm/sim/store.js';

let manufactured: Promise<Uint8Array> | undefined;

/** The state bytes of a freshly manufactured software TPM (made once, copied per test). */
function manufacturedState(): Promise<Uint8Array> {
  manufactured ??= (async () => {
    const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const ca = await createSelfSignedCa({ commonName: 'hypervisor-test EK CA', privateKey: caKey });
    const store = new MemoryStateStore();
    await manufactureTpm(store, {
      algorithms: ['ecc-p256'],
      issueEkCertificate: async (req) => (await issueCertificate({ issuer: { certificate: ca, privateKey: caKey }, subjectPublicKey: req.publicKey, commonName: 'EK', profile: 'ek', tpm: req.tpm })).der,
    });
    const state = await store.load();
    if (state === undefined) throw new Error('manufacturing stored no TPM state');
    return state;
  })();
  return manufactured;
}

/** The mediated TPM of a mini-domain on a TPM-like backend. */
export function tpmOf(cap: MiniDomainCapability | undefined): AuthDevice {
  if (cap?.authDevice.kind !== 'tpm') throw new Error('this mini-domain has no mediated TPM');
  return cap.authDevice.device;
}

export interface TestNode {
  readonly node: HypervisorNode;
  /** The test's own handle on the device, standing in for the physical world (power cycles). */
  readonly device: SoftwareTpmDevice;
  /** The good mini-domain image and its digest (the frozen launch policy). */
  readonly image: Uint8Array;
  readonly digest: Digest;
}

export const FIRMWARE = { description: 'trustlaunch model firmware 1.0', digest: sha256Digest('firmware 1.0') } as const;
export const HYPERVISOR_IMAGE = { description: 'trustlaunch hypervisor model', digest: sha256Digest('hypervisor image') } as const;

export async function bootTestNode(options: Partial<Omit<HypervisorBootOptions, 'openAuthDevice' | 'openNvStore' | 'bootConfig' | 'platform'>> & { image?: Uint8Array } = {}): Promise<TestNode> {
  const image = options.image ?? randomBytes(3 * 4096 + 123);
  const digest = sha256Digest(image);
  const device = new SoftwareTpmDevice({ store: new MemoryStateStore(await manufacturedState()) });
  const { image: _image, ...rest } = options;
  const node = await bootHypervisor({
    ...rest,
    bootConfig: { v: 1, nodeId: 'node-1', launchPolicy: { miniDomainDigest: digest } },
    platform: { firmware: FIRMWARE, hypervisor: HYPERVISOR_IMAGE },
    openAuthDevice: () => device,
  });
  return { node, device, image, digest };
}
