// A manager with real nodes for tests: the CA (src/ca) and N nodes (`initNode` +
// `startNode`: hypervisor, mini-domain, dom0, process VMs — or QEMU VMs for the nodes
// `vmBackends` names) in this process, each node
// registered with the CA and joined to the manager with a one-time join token — the
// same path `node serve --join` takes. The default process guest is on the CA's
// allowlist and pushed to the manager as image `guest`.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCertificate } from '../../src/crypto/x509.js';
import { JsonClient } from '../../src/http/client.js';
import { readSecretFile } from '../../src/crypto/files.js';
import { sha256Digest, type Digest } from '../../src/protocol/digest.js';
import type { VmBackendKind } from '../../src/node/config.js';
import { initNode, type InitializedNode } from '../../src/node/init.js';
import { startNode, type RunningNode } from '../../src/node/node.js';
import { defaultGuestImage } from '../../src/node/vm/process/index.js';
import { startTestCa, type TestCa } from '../ca/support/ca.js';
import { clientKey, type ClientKey } from '../node/vm/support.js';
import { requireCommand, tempDir } from '../support/system.js';
import type { TestManager } from './support.js';

export interface TestNode {
  readonly id: string;
  readonly init: InitializedNode;
  readonly node: RunningNode;
  /** dom0's API as the manager sees it (for checking what the node really has). */
  readonly dom0: JsonClient;
  /** Stops the node's process (hypervisor, dom0, VMs). */
  stop(): Promise<void>;
  /** Starts it again on the same directory and port (the manager's inventory still points there). */
  restart(): Promise<void>;
}

export interface TestCluster {
  readonly ca: TestCa;
  readonly nodes: readonly TestNode[];
  readonly key: ClientKey;
  readonly guestDigest: Digest;
  /** Uploads bytes as a raw image named `name` (admin). */
  pushImage(name: string, bytes: Uint8Array): Promise<Digest>;
  /** Uploads a QEMU bundle's parts and names it `name` (admin); resolves to the manifest's digest. */
  pushBundle(name: string, parts: { kernel: Uint8Array; initrd?: Uint8Array; cmdline?: Uint8Array }): Promise<Digest>;
  /** Resolves once the manager lists every node up. */
  waitForNodesUp(timeoutMs?: number): Promise<void>;
  dispose(): Promise<void>;
}

export async function startCluster(
  m: TestManager,
  o: { nodes: number; memoryMiB?: number; maxVms?: number; attestation?: 'on' | 'off'; /** Node i's backend (default process). */ vmBackends?: readonly VmBackendKind[] },
): Promise<TestCluster> {
  requireCommand('/usr/sbin/sshd');
  requireCommand('ssh-keygen');
  const tmp = tempDir('tl-mgr-cluster-');
  const ca = await startTestCa({ databaseUrl: 'sqlite::memory:' });
  const rootFile = join(tmp.path, 'ca-root.pem');
  await writeFile(rootFile, ca.material.root.certificate.pem);
  const guestDigest = sha256Digest(defaultGuestImage());
  await ca.admin.addAllowlist({ name: 'process-guest', kernel: guestDigest });
  const key = await clientKey();
  const managerCa = parseCertificate(m.caCertificate);
  const nodes: TestNode[] = [];
  const dispose = async (): Promise<void> => {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await ca.dispose();
    key.dispose();
    tmp.dispose();
  };
  try {
    for (let i = 1; i <= o.nodes; i++) nodes.push(await startOne(`node-${i}`, o.vmBackends?.[i - 1] ?? 'process'));
  } catch (e) {
    await dispose();
    throw e;
  }

  async function startOne(id: string, vmBackend: VmBackendKind): Promise<TestNode> {
    const init = await initNode({
      dir: join(tmp.path, id),
      nodeId: id,
      device: 'sim',
      caUrl: ca.url,
      caCertificateFile: rootFile,
      listen: { host: '127.0.0.1', port: 0 },
      memoryMiB: o.memoryMiB ?? 2048,
      ...(o.maxVms === undefined ? {} : { maxVms: o.maxVms }),
      attestation: o.attestation ?? 'on',
      vmBackend,
    });
    for (const root of init.endorsementRoots) await ca.trustManufacturer(parseCertificate(await readFile(root, 'utf8')));
    const ms = init.measurements;
    await ca.admin.addPlatform({ name: `platform-${id}`, hypervisor: ms.hypervisor, minidomain: ms.minidomain, firmware: ms.firmware, bootConfig: ms.bootConfig });
    const enrollToken = (await ca.admin.createToken()).token;
    const { token: joinToken } = await m.admin.call<{ token: string }>('POST', '/v1/nodes/tokens', { body: {} });
    const base = {
      dir: init.paths.dir,
      enrollToken,
      agent: { backoff: { initialMs: 50, maxMs: 400 } },
    };
    let node = await startNode({ ...base, listen: { host: '127.0.0.1', port: 0 }, join: { managerUrl: m.url, managerCa, joinToken } });
    const port = Number(new URL(node.url).port);
    const dom0Token = (await readSecretFile(init.paths.dom0Token)).toString('utf8').trim();
    const dom0 = new JsonClient({ baseUrl: node.url, ca: await readFile(init.paths.tlsCa, 'utf8'), token: dom0Token, timeoutMs: 30_000 });
    let running = true;
    return {
      id,
      init,
      get node() {
        return node;
      },
      dom0,
      stop: async () => {
        if (!running) return;
        running = false;
        await node.stop();
      },
      restart: async () => {
        node = await startNode({ ...base, listen: { host: '127.0.0.1', port } });
        running = true;
      },
    };
  }

  const putBlob = async (bytes: Uint8Array): Promise<Digest> => {
    const digest = sha256Digest(bytes);
    await m.admin.call('PUT', `/v1/blobs/${digest}`, { raw: { body: bytes, contentType: 'application/octet-stream', length: bytes.length } });
    return digest;
  };

  return {
    ca,
    nodes,
    key,
    guestDigest,
    pushImage: async (name, bytes) => {
      const digest = await putBlob(bytes);
      await m.admin.call('POST', '/v1/images', { body: { name, raw: digest } });
      return digest;
    },
    pushBundle: async (name, parts) => {
      const bundle: Record<string, Digest> = { kernel: await putBlob(parts.kernel) };
      if (parts.initrd !== undefined) bundle['initrd'] = await putBlob(parts.initrd);
      if (parts.cmdline !== undefined) bundle['cmdline'] = await putBlob(parts.cmdline);
      return (await m.admin.call<{ digest: Digest }>('POST', '/v1/images', { body: { name, bundle } })).digest;
    },
    waitForNodesUp: async (timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { nodes: listed } = await m.admin.call<{ nodes: Array<{ id: string; status: string; health: string | null }> }>('GET', '/v1/nodes');
        if (listed.length === o.nodes && listed.every((n) => n.status === 'up' && n.health === 'ok')) return;
        if (Date.now() > deadline) throw new Error(`nodes not all up and healthy after ${timeoutMs} ms: ${JSON.stringify(listed)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    dispose,
  };
}

export interface VmView {
  vmId: string;
  name: string;
  state: string;
  node: string | null;
  nonce: string;
  hostname: string;
  reason: { code: string; message: string } | null;
  nodeReport: { state: string; attestation: string; code?: string; ssh?: { host: string; port: number }; kernel?: string } | null;
}

/** Polls the manager until the VM is in one of `states` (or fails the test after `timeoutMs`). */
export async function waitForState(client: JsonClient, ref: string, states: readonly string[], timeoutMs = 30_000): Promise<VmView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const vm = await client.call<VmView>('GET', `/v1/vms/${ref}`);
    if (states.includes(vm.state)) return vm;
    if (Date.now() > deadline) throw new Error(`VM ${ref} is ${vm.state}, not ${states.join('|')}, after ${timeoutMs} ms: ${JSON.stringify(vm)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
