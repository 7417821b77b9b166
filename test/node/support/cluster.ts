// A whole node against a real CA, in this process: the CA service (src/ca) on a free
// loopback port with an in-memory SQLite database, a node directory made by `initNode`
// (its manufacturer CA trusted by the CA, its boot measurements added as platform
// reference values, the default process guest on the allowlist), and `startNode` with
// the real process VM backend. The manager is played by a JSON client holding dom0's
// token, pinned to dom0's TLS CA — the same interface the real manager uses.
import { rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseCertificate } from '../../../src/crypto/x509.js';
import { JsonClient } from '../../../src/http/client.js';
import { readSecretFile } from '../../../src/crypto/files.js';
import { sha256Digest, type Digest } from '../../../src/protocol/digest.js';
import { newNonce } from '../../../src/protocol/nonce.js';
import type { NodeDeviceKind } from '../../../src/node/config.js';
import { initNode, type InitializedNode } from '../../../src/node/init.js';
import { startNode, type NodeLog, type RunningNode, type StartNodeOptions } from '../../../src/node/node.js';
import type { VmView } from '../../../src/node/dom0/vms.js';
import { defaultGuestImage } from '../../../src/node/vm/process/index.js';
import { requireCommand, tempDir } from '../../support/system.js';
import { startTestCa, type TestCa } from '../../ca/support/ca.js';
import { loadCaDirectory } from '../../../src/ca/directory.js';
import { startCaService, type CaService } from '../../../src/ca/service.js';
import { clientKey, type ClientKey } from '../vm/support.js';

export interface Cluster {
  readonly dir: string;
  readonly ca: TestCa;
  readonly init: InitializedNode;
  readonly node: RunningNode;
  /** The manager's view: dom0's API with its bearer token, TLS pinned to dom0's CA. */
  readonly dom0: JsonClient;
  readonly key: ClientKey;
  readonly logs: Array<Record<string, unknown>>;
  readonly guestDigest: Digest;
  /** Takes the CA offline (its database file stays) — the node then sees CA_UNREACHABLE. */
  stopCa(): Promise<void>;
  /** Brings the CA back on the same address with the same database. */
  startCa(): Promise<void>;
  /** Stops the node (the CA keeps running) — for restarts. */
  stopNode(): Promise<void>;
  /** Starts the node again on the same directory. */
  restartNode(extra?: Partial<StartNodeOptions>): Promise<RunningNode>;
  waitForLog(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  dispose(): Promise<void>;
}

export interface ClusterOptions {
  readonly device?: NodeDeviceKind;
  readonly attestation?: 'on' | 'off';
  readonly start?: Partial<StartNodeOptions>;
  /** Skip registration material (no enrollment token). */
  readonly enroll?: boolean;
  /** Changes the node config (node.json) before the node starts. */
  readonly config?: (config: Record<string, unknown>) => void;
}

export async function startCluster(o: ClusterOptions = {}): Promise<Cluster> {
  requireCommand('/usr/sbin/sshd');
  requireCommand('ssh-keygen');
  const tmp = tempDir('tl-cluster-');
  const databaseUrl = `sqlite:${join(tmp.path, 'ca.db')}`;
  const ca = await startTestCa({ databaseUrl });
  let caService: CaService = ca.service;
  let caUp = true;
  const rootFile = join(tmp.path, 'ca-root.pem');
  await writeFile(rootFile, ca.material.root.certificate.pem);
  const dir = join(tmp.path, 'node');
  const init = await initNode({
    dir,
    nodeId: 'node-1',
    device: o.device ?? 'sim',
    caUrl: ca.url,
    caCertificateFile: rootFile,
    listen: { host: '127.0.0.1', port: 0 },
    memoryMiB: 2048,
    attestation: o.attestation ?? 'on',
  });
  for (const root of init.endorsementRoots) await ca.trustManufacturer(parseCertificate(await readFile(root, 'utf8')));
  const m = init.measurements;
  await ca.admin.addPlatform({ name: 'test-node', hypervisor: m.hypervisor, minidomain: m.minidomain, firmware: m.firmware, bootConfig: m.bootConfig });
  const guestDigest = sha256Digest(defaultGuestImage());
  await ca.admin.addAllowlist({ name: 'process-guest', kernel: guestDigest });
  if (o.config !== undefined) {
    const config = JSON.parse(await readFile(init.paths.config, 'utf8')) as Record<string, unknown>;
    o.config(config);
    await writeFile(init.paths.config, JSON.stringify(config), { mode: 0o600 });
  }
  const token = o.enroll === false ? undefined : (await ca.admin.createToken()).token;
  const logs: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  const log: NodeLog = (line) => {
    logs.push({ ...line });
    for (const w of [...waiters]) w();
  };
  const base: StartNodeOptions = {
    dir,
    ...(token === undefined ? {} : { enrollToken: token }),
    listen: { host: '127.0.0.1', port: 0 },
    log,
    agent: { backoff: { initialMs: 50, maxMs: 400 } },
    ...o.start,
  };
  let node = await startNode(base);
  const key = await clientKey();
  const dom0Token = (await readSecretFile(init.paths.dom0Token)).toString('utf8').trim();
  const tlsCa = await readFile(init.paths.tlsCa, 'utf8');
  let dom0 = new JsonClient({ baseUrl: node.url, ca: tlsCa, token: dom0Token, timeoutMs: 30_000 });
  let running = true;
  const cluster: Cluster = {
    dir,
    ca,
    init,
    get node() {
      return node;
    },
    get dom0() {
      return dom0;
    },
    key,
    logs,
    guestDigest,
    stopCa: async () => {
      if (!caUp) return;
      caUp = false;
      await caService.close();
    },
    startCa: async () => {
      if (caUp) return;
      const material = await loadCaDirectory(ca.dir);
      caService = await startCaService({ material, databaseUrl, listen: `127.0.0.1:${ca.service.port}`, threads: 0, logLevel: false });
      caUp = true;
    },
    stopNode: async () => {
      if (!running) return;
      running = false;
      await dom0.close();
      await node.stop();
    },
    restartNode: async (extra = {}) => {
      node = await startNode({ ...base, ...extra });
      running = true;
      dom0 = new JsonClient({ baseUrl: node.url, ca: tlsCa, token: dom0Token, timeoutMs: 30_000 });
      return node;
    },
    waitForLog: (event, timeoutMs = 20_000) =>
      new Promise((resolve, reject) => {
        let seen = 0;
        const check = (): void => {
          for (; seen < logs.length; seen++) {
            const l = logs[seen] as Record<string, unknown>;
            if (l['event'] === event) {
              cleanup();
              resolve(l);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no "${event}" in the node's log within ${timeoutMs} ms; log: ${JSON.stringify(logs.slice(-10))}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
    dispose: async () => {
      await cluster.stopNode().catch(() => undefined);
      if (caService === ca.service) {
        if (!caUp) await Promise.all([ca.client.close(), ca.admin.close()]);
        else await ca.dispose();
      } else {
        // The first service is long closed (closing it twice would hang): close the rest by hand.
        if (caUp) await caService.close();
        await Promise.all([ca.client.close(), ca.admin.close()]);
      }
      rmSync(dirname(ca.dir), { recursive: true, force: true });
      key.dispose();
      tmp.dispose();
    },
  };
  return cluster;
}

export interface CreatedVm {
  readonly vmId: string;
  readonly nonce: string;
  readonly hostname: string;
  readonly view: VmView;
}

/** The manager's calls: the image uploaded (PUT), then the VM created (POST). */
export async function createVm(c: Cluster, o: { vmId: string; image?: Uint8Array; nonce?: string; hostname?: string }): Promise<CreatedVm> {
  const image = o.image ?? defaultGuestImage();
  const digest = sha256Digest(image);
  await c.dom0.call('PUT', `/v1/images/${digest}`, { raw: { body: image, contentType: 'application/octet-stream', length: image.length } });
  const nonce = o.nonce ?? newNonce();
  const hostname = o.hostname ?? `${o.vmId}.trustlaunch.test`;
  const view = await c.dom0.call<VmView>('POST', '/v1/vms', { body: { vmId: o.vmId, image: digest, nonce, hostname, authorizedKey: c.key.publicKey, memoryMiB: 128 } });
  return { vmId: o.vmId, nonce, hostname, view };
}

/** Polls dom0 until the VM's attestation leaves booting/attesting (or `timeoutMs`). */
export async function waitForAttestation(c: Cluster, vmId: string, timeoutMs = 30_000): Promise<VmView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await c.dom0.call<VmView>('GET', `/v1/vms/${vmId}`);
    if (v.attestation.state === 'attested' || v.attestation.state === 'refused') return v;
    if (Date.now() > deadline) throw new Error(`VM ${vmId} still ${v.attestation.state} after ${timeoutMs} ms (${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
