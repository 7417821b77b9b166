// `trustlaunch up`: a CA, a manager and N nodes (process VMs; each node's auth device the
// software TPM, its own swtpm, or a pci-nvstore) on this machine, in this process, wired
// together exactly as separate operators would do it with the CLI (README "five-minute
// walkthrough"):
//   CA      ca init → ca serve; the shipped guest image allowlisted; each node's EK vendor
//           root trusted and its boot measurements added as platform reference values
//   manager manager init → manager serve; the guest pushed as image `guest`; a user added
//   nodes   node init → node serve with a one-time CA enrollment token (registration) and
//           a one-time manager join token
// `stop()` takes it all down (manager, then nodes with their VMs and their swtpm, then the
// CA). A second `up` on the same directory resumes it: same keys, same ports, same
// database, the same device in each node directory (a node's device is its identity).
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { CaAdminClient } from '../ca/client.js';
import { initCaDirectory, loadCaDirectory, addEndorsementRoot } from '../ca/directory.js';
import { startCaService, type CaService } from '../ca/service.js';
import { writeSecretFile, readSecretFile } from '../crypto/files.js';
import { parseCertificate } from '../crypto/x509.js';
import { JsonClient } from '../http/client.js';
import { initManager } from '../manager/init.js';
import type { ManagerConfigInput } from '../manager/config.js';
import { managerPaths } from '../manager/config.js';
import { startManager, type RunningManager } from '../manager/server.js';
import { initNode } from '../node/init.js';
import { nodePaths, readNodeConfig, type NodeDeviceKind } from '../node/config.js';
import { startNode, type NodeLog, type RunningNode } from '../node/node.js';
import { defaultGuestImage } from '../node/vm/process/index.js';
import { sha256Digest } from '../protocol/digest.js';
import { isTrustlaunchError, TrustlaunchError } from '../protocol/errors.js';
import { redactUrl } from '../store/index.js';
import { clusterPaths, readSummary, writeSummary, type ClusterPaths, type ClusterSummary } from './layout.js';

export const GUEST_IMAGE_NAME = 'guest';
export const GUEST_ALLOWLIST_NAME = 'process-guest';
export const MAX_NODES = 16;
/** The auth devices `up` gives its nodes: each node has its own (a hardware TPM cannot be shared by N nodes). */
export const UP_DEVICES = ['sim', 'swtpm', 'pci-nvstore'] as const satisfies readonly NodeDeviceKind[];
export type UpDevice = (typeof UP_DEVICES)[number];

export interface UpOptions {
  readonly dir: string;
  /** How many nodes (default 2). */
  readonly nodes?: number;
  /** One database URL for the CA and the manager (postgres://…); default: SQLite files in DIR. */
  readonly database?: string;
  /**
   * Each node's auth device (default `sim`, the software TPM). `swtpm`: every node starts its
   * own swtpm over a state directory in its node directory and stops it when the node stops.
   */
  readonly device?: UpDevice;
  /** `off`: nodes never attest (a benchmark switch, docs/node.md). */
  readonly attestation?: 'on' | 'off';
  /** The user created for you (default `demo`). */
  readonly user?: string;
  readonly nodeMemoryMiB?: number;
  readonly maxVms?: number;
  /** Manager config fields (e.g. vmMemoryMiB), for a fresh directory. */
  readonly managerSettings?: Partial<Omit<ManagerConfigInput, 'version' | 'listen' | 'database' | 'adminTokenHash'>>;
  /** CA judge threads (default: one per CPU). */
  readonly caThreads?: number;
  /** Progress lines for people. */
  readonly progress?: (line: string) => void;
}

export interface RunningCluster {
  readonly paths: ClusterPaths;
  readonly summary: ClusterSummary;
  /** Whether this start resumed an existing directory. */
  readonly resumed: boolean;
  readonly ca: CaService;
  readonly manager: RunningManager;
  readonly managerCaFile: string;
  readonly nodes: readonly RunningNode[];
  /** The user's API token (also in DIR/user.token, 0600). */
  readonly userToken: string;
  /** An admin client of the CA (for tests and the demo's operator). */
  readonly caAdmin: CaAdminClient;
  /** An admin client of the manager. */
  readonly managerAdmin: JsonClient;
  stop(): Promise<void>;
}

/** A node log that also resolves when the mini-domain has its CA anchor (or fails when it is refused). */
function nodeLogger(stream: WriteStream): { log: NodeLog; anchored: Promise<void> } {
  let settle: { resolve: () => void; reject: (e: Error) => void } | undefined;
  const anchored = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  anchored.catch(() => undefined);
  const log: NodeLog = (line) => {
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...line })}\n`);
    if (line.part !== 'minidomain') return;
    if (line.event === 'registered' || line.event === 'anchored') settle?.resolve();
    if (line.event === 'registration-refused' || line.event === 'unregistered') {
      const text = (v: unknown): string => (typeof v === 'string' ? v : '');
      settle?.reject(new TrustlaunchError('UNAVAILABLE', `the node could not register with the CA: ${text(line['code']) || line.event} ${text(line['message'])}`));
    }
  };
  return { log, anchored };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TrustlaunchError('TIMEOUT', `${what} did not happen within ${ms / 1000} s`)), ms);
    }),
  ]);
}

export async function up(o: UpOptions): Promise<RunningCluster> {
  const count = o.nodes ?? 2;
  if (!Number.isInteger(count) || count < 1 || count > MAX_NODES) throw new TrustlaunchError('MALFORMED_REQUEST', `--nodes is 1..${MAX_NODES}`);
  if (o.device !== undefined && !(UP_DEVICES as readonly string[]).includes(o.device)) throw new TrustlaunchError('MALFORMED_REQUEST', `--device is one of ${UP_DEVICES.join(', ')}`);
  const paths = clusterPaths(o.dir);
  const progress = o.progress ?? (() => undefined);
  const previous = await readSummary(paths);
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  await mkdir(paths.logs, { recursive: true, mode: 0o700 });
  if (previous !== undefined && previous.nodes.length !== count && o.nodes !== undefined) {
    throw new TrustlaunchError('CONFLICT', `${o.dir} holds a cluster of ${previous.nodes.length} node(s); start it without --nodes, or use another --dir`);
  }
  if (previous !== undefined && o.device !== undefined) await checkDevices(paths, previous.nodes.map((n) => n.id), o.device);

  const streams: WriteStream[] = [];
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
    await Promise.all(streams.splice(0).map((s) => new Promise<void>((r) => s.end(r))));
  };
  try {
    // --- the CA ---------------------------------------------------------------------
    if (previous === undefined) await initCaDirectory(paths.ca, { listen: '127.0.0.1:0' });
    const material = await loadCaDirectory(paths.ca);
    const database = o.database;
    if (previous !== undefined && (previous.database === '') !== (database === undefined)) {
      throw new TrustlaunchError('CONFLICT', `${o.dir} was started with ${previous.database === '' ? 'its own SQLite files' : `the database ${previous.database}`}: start it the same way (--db)`);
    }
    const ca = await startCaService({
      material,
      databaseUrl: database ?? `sqlite:${paths.ca}/ca.db`,
      listen: `127.0.0.1:${previous?.ca.port ?? 0}`,
      threads: o.caThreads ?? availableParallelism(),
      logLevel: 'info',
      logFile: paths.log('ca'),
    });
    stops.push(() => ca.close());
    const caRootFile = `${paths.ca}/root-ca.pem`;
    const caAdmin = new CaAdminClient({ url: ca.url, root: material.root.certificate, token: (await readSecretFile(`${paths.ca}/admin.token`)).toString('utf8').trim(), timeoutMs: 30_000 });
    stops.push(() => caAdmin.close());
    progress(`CA ${material.config.issuer} on ${ca.url} (fingerprint ${ca.fingerprint})`);

    // --- the manager ------------------------------------------------------------------
    const mpaths = managerPaths(paths.manager);
    if (previous === undefined) await initManager({ dir: paths.manager, listenPort: 0, settings: { nodePollIntervalMs: 1000, ...o.managerSettings } });
    const manager = await startManager({
      dir: paths.manager,
      database: database ?? `sqlite:${paths.manager}/manager.db`,
      port: previous?.manager.port ?? 0,
      logger: { level: 'info', file: paths.log('manager') },
    });
    stops.push(() => manager.close());
    const managerAdmin = new JsonClient({ baseUrl: manager.url, ca: manager.caCertificate, token: (await readSecretFile(mpaths.adminToken)).toString('utf8').trim(), timeoutMs: 60_000 });
    stops.push(() => managerAdmin.close());
    progress(`manager on ${manager.url}`);

    // --- the shipped guest: allowlisted at the CA, pushed to the manager ----------------
    const guest = defaultGuestImage();
    const guestDigest = sha256Digest(guest);
    if (previous === undefined) {
      await caAdmin.addAllowlist({ name: GUEST_ALLOWLIST_NAME, kernel: guestDigest });
      await managerAdmin.call('PUT', `/v1/blobs/${guestDigest}`, { raw: { body: guest, contentType: 'application/octet-stream', length: guest.length } });
      await managerAdmin.call('POST', '/v1/images', { body: { name: GUEST_IMAGE_NAME, raw: guestDigest } });
      progress(`image ${GUEST_IMAGE_NAME} = ${guestDigest} (guest/process/guest.mjs), on the CA's allowlist as ${GUEST_ALLOWLIST_NAME}`);
    }

    // --- the nodes --------------------------------------------------------------------
    const nodes: RunningNode[] = [];
    const managerCa = parseCertificate(manager.caCertificate);
    const ids = previous?.nodes.map((n) => n.id) ?? Array.from({ length: count }, (_, i) => `node-${i + 1}`);
    for (const [i, id] of ids.entries()) {
      const dir = paths.node(id);
      const stream = createWriteStream(paths.log(id), { flags: 'a', mode: 0o600 });
      streams.push(stream);
      const { log, anchored } = nodeLogger(stream);
      let node: RunningNode;
      if (previous === undefined) {
        const init = await initNode({
          dir,
          nodeId: id,
          device: o.device ?? 'sim',
          caUrl: ca.url,
          caCertificateFile: caRootFile,
          listen: { host: '127.0.0.1', port: 0 },
          memoryMiB: o.nodeMemoryMiB ?? 4096,
          ...(o.maxVms === undefined ? {} : { maxVms: o.maxVms }),
          attestation: o.attestation ?? 'on',
        });
        for (const root of init.endorsementRoots) await addEndorsementRoot(paths.ca, root);
        const m = init.measurements;
        await caAdmin.addPlatform({ name: `platform-${id}`, hypervisor: m.hypervisor, minidomain: m.minidomain, firmware: m.firmware, bootConfig: m.bootConfig });
        const enrollToken = (await caAdmin.createToken()).token;
        const { token: joinToken } = await managerAdmin.call<{ token: string }>('POST', '/v1/nodes/tokens', { body: {} });
        node = await startNode({ dir, enrollToken, listen: { host: '127.0.0.1', port: 0 }, log, join: { managerUrl: manager.url, managerCa, joinToken } });
      } else {
        node = await startNode({ dir, listen: { host: '127.0.0.1', port: previous.nodes[i]?.port ?? 0 }, log });
      }
      stops.push(() => node.stop());
      nodes.push(node);
      if ((previous?.attestation ?? o.attestation ?? 'on') === 'on') await withTimeout(anchored, 60_000, `registration of ${id} with the CA`);
      progress(`${id} on ${node.url} (${node.hypervisor.status().authDevice.description})${previous === undefined ? ', registered with the CA and joined to the manager' : ''}`);
    }

    // --- the user ---------------------------------------------------------------------
    const user = previous?.user ?? o.user ?? 'demo';
    let userToken: string;
    if (previous === undefined) {
      userToken = (await managerAdmin.call<{ token: string }>('POST', '/v1/users', { body: { name: user, role: 'user' } })).token;
      await writeSecretFile(paths.userToken, `${userToken}\n`);
    } else {
      userToken = (await readSecretFile(paths.userToken)).toString('utf8').trim();
    }
    await waitForNodesUp(managerAdmin, ids.length);

    const summary: ClusterSummary = {
      v: 1,
      ca: { url: ca.url, port: ca.port, fingerprint: ca.fingerprint },
      manager: { url: manager.url, port: Number(new URL(manager.url).port) },
      nodes: nodes.map((n) => ({ id: n.config.nodeId, url: n.url, port: Number(new URL(n.url).port) })),
      user,
      image: { name: GUEST_IMAGE_NAME, digest: guestDigest },
      database: database === undefined ? '' : redactUrl(database),
      attestation: previous?.attestation ?? o.attestation ?? 'on',
      createdAt: previous?.createdAt ?? new Date().toISOString(),
    };
    await writeSummary(paths, summary);
    let stopping: Promise<void> | undefined;
    return {
      paths,
      summary,
      resumed: previous !== undefined,
      ca,
      manager,
      managerCaFile: mpaths.tlsCa,
      nodes,
      userToken,
      caAdmin,
      managerAdmin,
      stop: () => (stopping ??= stopAll()),
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

/** A resumed directory keeps each node's device: asking for another one is a CONFLICT, not a silent switch. */
async function checkDevices(paths: ClusterPaths, ids: readonly string[], device: UpDevice): Promise<void> {
  for (const id of ids) {
    const config = await readNodeConfig(nodePaths(paths.node(id)).config);
    if (config.device.kind !== device) {
      throw new TrustlaunchError('CONFLICT', `${paths.dir}: node ${id} runs on ${config.device.kind}, not ${device}; start it without --device, or use another --dir`);
    }
  }
}

/** Until the manager lists `count` nodes up and healthy (their dom0 answered, their mini-domain runs). */
async function waitForNodesUp(admin: JsonClient, count: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { nodes } = await admin.call<{ nodes: Array<{ status: string; health: string | null }> }>('GET', '/v1/nodes');
    if (nodes.length >= count && nodes.every((n) => n.status === 'up' && n.health === 'ok')) return;
    if (Date.now() > deadline) throw new TrustlaunchError('TIMEOUT', `the manager does not list ${count} node(s) up after ${timeoutMs / 1000} s: ${JSON.stringify(nodes)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Reads a cluster's user token (for tools that attach to a running `up`). */
export async function readUserToken(dir: string): Promise<string> {
  try {
    return (await readSecretFile(clusterPaths(dir).userToken)).toString('utf8').trim();
  } catch (e) {
    if (isTrustlaunchError(e)) throw e;
    throw new TrustlaunchError('NOT_FOUND', `no user token in ${dir}: ${(e as Error).message}`);
  }
}
