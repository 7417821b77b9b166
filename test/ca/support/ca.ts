// A CA for tests: a fresh CA directory, the service started in this process on a free
// loopback port, and clients pinned to its root.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { addEndorsementRoot, initCaDirectory, loadCaDirectory, type InitCaOptions, type CaMaterial } from '../../../src/ca/directory.js';
import { startCaService, type CaService } from '../../../src/ca/service.js';
import { CaAdminClient, CaClient } from '../../../src/ca/client.js';
import type { Certificate } from '../../../src/crypto/x509.js';
import { tempDir } from '../../support/system.js';
import type { AuthDevice } from '../../../src/tpm/auth-device.js';
import type { SimNode } from './sim-node.js';

export interface TestCa {
  readonly dir: string;
  readonly material: CaMaterial;
  readonly service: CaService;
  readonly url: string;
  readonly adminToken: string;
  readonly client: CaClient;
  readonly admin: CaAdminClient;
  /** Adds a certificate file to the endorsement roots (takes effect at the next registration). */
  trustManufacturer(cert: Certificate): Promise<void>;
  /** Registers `node` with a fresh token, after trusting its manufacturer and its platform. */
  enroll(node: SimNode<AuthDevice>): Promise<void>;
  /** Stops the service (the directory stays until dispose). */
  stop(): Promise<void>;
  dispose(): Promise<void>;
}

export async function startTestCa(opts: { databaseUrl: string; threads?: number; init?: InitCaOptions; dir?: string } = { databaseUrl: 'sqlite::memory:' }): Promise<TestCa> {
  const tmp = opts.dir === undefined ? tempDir('tl-ca-') : undefined;
  const dir = opts.dir ?? join((tmp as { path: string }).path, 'ca');
  const init = await initCaDirectory(dir, opts.init ?? {});
  const material = await loadCaDirectory(dir);
  const service = await startCaService({ material, databaseUrl: opts.databaseUrl, listen: '127.0.0.1:0', threads: opts.threads ?? 0, logLevel: false });
  const client = new CaClient({ url: service.url, root: material.root.certificate });
  const admin = new CaAdminClient({ url: service.url, root: material.root.certificate, token: init.adminToken });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await client.close();
    await admin.close();
    await service.close();
  };
  const ca: TestCa = {
    dir,
    material,
    service,
    url: service.url,
    adminToken: init.adminToken,
    client,
    admin,
    trustManufacturer: async (cert) => {
      const file = join(dir, `incoming-${cert.sha256Fingerprint.slice(7, 19)}.pem`);
      await writeFile(file, cert.pem);
      await addEndorsementRoot(dir, file);
    },
    enroll: async (node) => {
      await ca.trustManufacturer(node.manufacturerCa);
      const platforms = await admin.listPlatforms();
      const ref = node.platformReference(`platform-${node.nodeId}`);
      if (!platforms.some((p) => p.name === ref.name)) await admin.addPlatform(ref);
      const { token } = await admin.createToken();
      const challenge = await client.startRegistration(node.registrationRequest(token));
      await client.answerRegistration(challenge.registrationId, await node.answer(challenge));
    },
    stop,
    dispose: async () => {
      await stop();
      tmp?.dispose();
    },
  };
  return ca;
}

