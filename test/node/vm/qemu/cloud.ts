// A cloud whose one node runs QEMU VMs, for the end-to-end tests: the real CA (src/ca) and
// manager (src/manager) in this process, a node made by `initNode({vmBackend: 'qemu'})`
// (registered with the CA, joined to the manager with a one-time token), the project's
// guest pushed to the manager with the real CLI (`trustlaunch image push --bundle DIR`)
// and allowlisted at the CA as the triple its manifest.json names, and a user whose client
// (the real SDK) has the CA pinned over HTTPS and an Ed25519 login key of its own.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TrustlaunchClient } from '../../../../src/client/client.js';
import { clientPaths, type ClientPaths } from '../../../../src/client/paths.js';
import { trustCa } from '../../../../src/client/pinned-ca.js';
import { readSecretFile } from '../../../../src/crypto/files.js';
import { parseCertificate } from '../../../../src/crypto/x509.js';
import { JsonClient } from '../../../../src/http/client.js';
import { initNode, type InitializedNode } from '../../../../src/node/init.js';
import { startNode, type NodeLog, type RunningNode } from '../../../../src/node/node.js';
import type { QemuVmBackend } from '../../../../src/node/vm/qemu/index.js';
import type { GuestBundle } from '../../../../src/node/vm/qemu/guest-image.js';
import { startTestCa, type TestCa } from '../../../ca/support/ca.js';
import { startTestManager, type TestManager } from '../../../manager/support.js';
import { requireCommand, tempDir } from '../../../support/system.js';
import { guest } from './support.js';
import { exec as run } from '../../../support/exec.js';

const BIN = fileURLToPath(new URL('../../../../bin/trustlaunch.js', import.meta.url));
export const IMAGE_NAME = 'debian-guest';

export interface QemuCloud {
  readonly dir: string;
  readonly ca: TestCa;
  readonly manager: TestManager;
  readonly init: InitializedNode;
  readonly node: RunningNode;
  readonly backend: QemuVmBackend;
  /** dom0's API as the manager sees it. */
  readonly dom0: JsonClient;
  readonly guest: GuestBundle;
  /** The image digest the manager gave the bundle (its manifest's). */
  readonly imageDigest: string;
  readonly user: { readonly paths: ClientPaths; readonly privateKeyFile: string; readonly publicKeyFile: string; readonly token: string };
  readonly logs: Array<Record<string, unknown>>;
  client(): Promise<TrustlaunchClient>;
  /** The CLI as the manager's admin. */
  cli(args: readonly string[]): Promise<{ status: number; stdout: string; stderr: string }>;
  dispose(): Promise<void>;
}

/** A system tool's exit status and output (test/support/exec.ts). */
export { run };

export async function startQemuCloud(o: { memoryMiB?: number } = {}): Promise<QemuCloud> {
  for (const c of ['/usr/sbin/sshd', 'ssh', 'ssh-keygen', 'ssh-keyscan', 'qemu-system-x86_64']) requireCommand(c);
  const g = guest();
  const tmp = tempDir('tl-qcloud-');
  const cleanups: Array<() => Promise<unknown>> = [() => Promise.resolve(tmp.dispose())];
  const dispose = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    const ca = await startTestCa({ databaseUrl: `sqlite:${join(tmp.path, 'ca.db')}` });
    cleanups.push(() => ca.dispose());
    // A QEMU VM's create request spans reading ~23 MB, hashing, and QEMU binding its port: more than the fast tests' 3 s on a loaded machine.
    const manager = await startTestManager({ databaseUrl: `sqlite:${join(tmp.path, 'manager.db')}`, settings: { nodeRequestTimeoutMs: 20_000 } });
    cleanups.push(() => manager.dispose());
    const rootFile = join(tmp.path, 'ca-root.pem');
    await writeFile(rootFile, ca.material.root.certificate.pem);
    const managerCaFile = join(tmp.path, 'manager-ca.pem');
    await writeFile(managerCaFile, manager.caCertificate);

    // The node: QEMU VMs, registered with the CA, joined to the manager.
    const init = await initNode({
      dir: join(tmp.path, 'node'),
      nodeId: 'qnode-1',
      device: 'sim',
      caUrl: ca.url,
      caCertificateFile: rootFile,
      listen: { host: '127.0.0.1', port: 0 },
      memoryMiB: o.memoryMiB ?? 2048,
      vmBackend: 'qemu',
    });
    for (const root of init.endorsementRoots) await ca.trustManufacturer(parseCertificate(await readFile(root, 'utf8')));
    const ms = init.measurements;
    await ca.admin.addPlatform({ name: 'platform-qnode-1', hypervisor: ms.hypervisor, minidomain: ms.minidomain, firmware: ms.firmware, bootConfig: ms.bootConfig });
    const enrollToken = (await ca.admin.createToken()).token;
    const { token: joinToken } = await manager.admin.call<{ token: string }>('POST', '/v1/nodes/tokens', { body: {} });
    const logs: Array<Record<string, unknown>> = [];
    const log: NodeLog = (line) => void logs.push({ ...line });
    const node = await startNode({
      dir: init.paths.dir,
      enrollToken,
      listen: { host: '127.0.0.1', port: 0 },
      log,
      agent: { backoff: { initialMs: 50, maxMs: 400 } },
      join: { managerUrl: manager.url, managerCa: parseCertificate(manager.caCertificate), joinToken },
    });
    cleanups.push(() => node.stop());
    const dom0 = new JsonClient({ baseUrl: node.url, ca: await readFile(init.paths.tlsCa, 'utf8'), token: (await readSecretFile(init.paths.dom0Token)).toString('utf8').trim(), timeoutMs: 30_000 });
    cleanups.push(() => dom0.close());
    if (node.backend.kind !== 'qemu') throw new Error(`the node runs ${node.backend.kind} VMs`);

    const cli = (args: readonly string[]): Promise<{ status: number; stdout: string; stderr: string }> =>
      run(process.execPath, [BIN, ...args], {
        timeoutMs: 120_000,
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: tmp.path, LANG: 'C', TRUSTLAUNCH_CONFIG_DIR: join(tmp.path, 'admin-config'), TRUSTLAUNCH_MANAGER_URL: manager.url, TRUSTLAUNCH_MANAGER_CA: managerCaFile, TRUSTLAUNCH_TOKEN: manager.adminToken },
      });
    // The guest: pushed with the real CLI from the built directory, allowlisted as a triple.
    const pushed = await cli(['image', 'push', '--bundle', g.dir, '--name', IMAGE_NAME, '--json']);
    if (pushed.status !== 0) throw new Error(`image push --bundle failed (${pushed.status}): ${pushed.stderr}`);
    const imageDigest = (JSON.parse(pushed.stdout) as { image: { digest: string } }).image.digest;
    await ca.admin.addAllowlist({ name: 'debian-guest', kernel: g.manifest.kernel, initrd: g.manifest.initrd, cmdline: g.manifest.cmdline });

    // The user.
    const { token } = await manager.addUser('alice');
    const paths = clientPaths(join(tmp.path, 'alice'));
    await trustCa({ paths, url: ca.url, fingerprint: ca.service.fingerprint });
    const privateKeyFile = join(paths.dir, 'login_key');
    const keygen = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice@test', '-f', privateKeyFile]);
    if (keygen.status !== 0) throw new Error(`ssh-keygen: ${keygen.stderr}`);
    const clients: TrustlaunchClient[] = [];
    cleanups.push(() => Promise.allSettled(clients.map((c) => c.close())));

    await waitForNodeUp(manager);
    return {
      dir: tmp.path,
      ca,
      manager,
      init,
      node,
      backend: node.backend,
      dom0,
      guest: g,
      imageDigest,
      user: { paths, privateKeyFile, publicKeyFile: `${privateKeyFile}.pub`, token },
      logs,
      client: async () => {
        const c = await TrustlaunchClient.open({ configDir: paths.dir, manager: { url: manager.url, token, ca: manager.caCertificate }, sshKey: `${privateKeyFile}.pub`, managerPollMs: 50 });
        clients.push(c);
        return c;
      },
      cli,
      dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

async function waitForNodeUp(manager: TestManager, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { nodes } = await manager.admin.call<{ nodes: Array<{ status: string; health: string | null }> }>('GET', '/v1/nodes');
    if (nodes.length === 1 && nodes.every((n) => n.status === 'up' && n.health === 'ok')) return;
    if (Date.now() > deadline) throw new Error(`the node is not up and healthy after ${timeoutMs} ms: ${JSON.stringify(nodes)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
