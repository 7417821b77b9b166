// `trustlaunch node serve`: one process holding the node's four parts (DESIGN.md §3),
// assembled here and nowhere else:
//   1. the hypervisor boots (measured boot; the launch policy frozen from the boot
//      configuration; it opens the auth device itself and keeps the only reference);
//   2. the VM backend's (process or QEMU) runner goes to the hypervisor, its node-facing
//      side to dom0;
//   3. dom0 reads the mini-domain image from disk and hands it to the launch gate; the
//      gate's entry hook starts the attestation agent (registration on first boot);
//   4. dom0's HTTPS API serves the manager.
// `stop` tears it down in reverse: no VM process is left behind.
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { readSecretFile } from '../crypto/files.js';
import { parseCertificate, type Certificate } from '../crypto/x509.js';
import { createHttpServer, listen, type HttpServer } from '../http/server.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { FIRMWARE, hypervisorMeasurement, type NodeMeasurements } from './boot-chain.js';
import { deviceBootOptions } from './auth-device.js';
import { nodePaths, readNodeConfig, type NodeConfig, type NodePaths, type VmBackendKind } from './config.js';
import { Dom0, registerDom0Routes } from './dom0/index.js';
import { ImageStore } from './dom0/images.js';
import { bootHypervisor, type HypervisorLimits, type HypervisorNode } from './hypervisor/index.js';
import { measureNode } from './init.js';
import { joinManager } from './join.js';
import type { AgentLogEvent, AgentSettings } from './minidomain/agent.js';
import { miniDomainEntry } from './minidomain/entry.js';
import { ProcessVmBackend, type ProcessVmBackendOptions } from './vm/process/index.js';
import { QemuVmBackend, type QemuVmBackendOptions } from './vm/qemu/index.js';

const MiB = 1024 * 1024;

export type NodeLog = (line: { readonly part: 'node' | 'dom0' | 'minidomain'; readonly event: string; readonly [key: string]: unknown }) => void;

export interface StartNodeOptions {
  readonly dir: string;
  /** Another config file than DIR/node.json. */
  readonly configPath?: string;
  /** The CA's enrollment token for the first registration (a secret). */
  readonly enrollToken?: string;
  /** Overrides the config's listen address (e.g. port 0 in tests). */
  readonly listen?: { readonly host: string; readonly port: number };
  readonly log?: NodeLog;
  /** Agent settings beyond the config's (tests: backoff, timeouts). */
  readonly agent?: Partial<Omit<AgentSettings, 'caUrl' | 'enrollToken' | 'bootstrapCaCertificate' | 'log'>>;
  readonly limits?: Partial<HypervisorLimits>;
  readonly processVms?: Omit<ProcessVmBackendOptions, 'runtimeRoot' | 'capacityBytes' | 'ports'>;
  /** Overrides the config's VM backend (`node serve --vm-backend`). */
  readonly vmBackend?: VmBackendKind;
  readonly qemuVms?: Omit<QemuVmBackendOptions, 'runtimeRoot' | 'capacityBytes' | 'ports'>;
  /** Join a manager once dom0 listens. */
  readonly join?: { readonly managerUrl: string; readonly managerCa: Certificate; readonly joinToken: string; readonly endpoint?: string };
}

export interface RunningNode {
  readonly paths: NodePaths;
  readonly config: NodeConfig;
  readonly url: string;
  readonly hypervisor: HypervisorNode;
  readonly dom0: Dom0;
  readonly backend: ProcessVmBackend | QemuVmBackend;
  readonly measurements: NodeMeasurements;
  stop(): Promise<void>;
}

export async function startNode(o: StartNodeOptions): Promise<RunningNode> {
  const paths = nodePaths(o.dir);
  const log: NodeLog = o.log ?? (() => undefined);
  const config = await readNodeConfig(o.configPath ?? paths.config);
  const bootConfig: unknown = JSON.parse(await readFile(paths.bootConfig, 'utf8'));
  const measurements = await measureNode(paths);

  const backend = await openBackend(o.vmBackend ?? config.vm.backend, config, paths, o);
  const images = new ImageStore(paths.images, config.vm.maxImageMiB * MiB);
  await images.init();

  // The agent's settings come from dom0's side of the node (files in DIR): untrusted input.
  const settings = (): AgentSettings => ({
    ...o.agent,
    caUrl: config.ca.url,
    attestation: config.attestation,
    ...(existsSync(paths.caBootstrap) ? { bootstrapCaCertificate: readFileSync(paths.caBootstrap, 'utf8') } : {}),
    ...(o.enrollToken === undefined ? {} : { enrollToken: o.enrollToken }),
    log: (e: AgentLogEvent) => log({ part: 'minidomain', ...e }),
  });

  // The exit hook needs dom0, which needs the booted hypervisor's capability.
  const late: { dom0?: Dom0 } = {};
  let hypervisor: HypervisorNode;
  try {
    hypervisor = await bootHypervisor({
      bootConfig,
      platform: { firmware: FIRMWARE, hypervisor: hypervisorMeasurement() },
      ...deviceBootOptions(config, paths.device),
      miniDomain: miniDomainEntry(settings),
      vmRunner: backend.runner,
      onMiniDomainExit: (exit) => late.dom0?.onMiniDomainExit(exit),
      limits: { maxVms: config.maxVms, hostMemoryBytes: (config.memoryMiB + 512) * MiB, maxVmMemoryBytes: config.memoryMiB * MiB, ...o.limits },
    });
  } catch (e) {
    await backend.close();
    throw e;
  }
  const status = hypervisor.status();
  log({ part: 'node', event: 'booted', nodeId: hypervisor.nodeId, device: status.authDevice.kind, vmBackend: backend.kind, measurements });
  const d0 = new Dom0({
    nodeId: hypervisor.nodeId,
    capability: hypervisor.dom0,
    images,
    backend,
    miniDomainImage: paths.miniDomainImage,
    limits: { memoryMiB: config.memoryMiB, maxVms: config.maxVms },
    device: { kind: status.authDevice.kind, bdf: status.authDevice.bdf },
    miniDomainDigest: hypervisor.launchPolicy.miniDomainDigest,
    attestation: config.attestation,
    log: (e) => log({ part: 'dom0', ...e }),
  });
  late.dom0 = d0;

  let app: HttpServer | undefined;
  const stop = async (): Promise<void> => {
    d0.close();
    await app?.close();
    await hypervisor.shutdown();
    await backend.close();
  };
  try {
    await d0.loader.start();
    const tls = { cert: await readFile(paths.tlsCert, 'utf8'), key: (await readSecretFile(paths.tlsKey)).toString('utf8') };
    app = await createHttpServer({ name: 'node dom0', version: '1', description: `dom0 of node ${hypervisor.nodeId} (untrusted)`, tls, logger: false, bodyLimit: 2 * MiB });
    await registerDom0Routes(app, d0, config.dom0.tokenHash);
    const listenOn = o.listen ?? config.dom0.listen;
    const bound = await listen(app, listenOn.host, listenOn.port);
    await writeFile(paths.endpoint, `${bound.url}\n`, { mode: 0o644 });
    log({ part: 'dom0', event: 'listening', url: bound.url });
    if (o.join !== undefined) {
      const token = (await readSecretFile(paths.dom0Token)).toString('utf8').trim();
      await joinManager({
        managerUrl: o.join.managerUrl,
        managerCa: o.join.managerCa,
        joinToken: o.join.joinToken,
        nodeId: hypervisor.nodeId,
        endpoint: o.join.endpoint ?? bound.url,
        dom0CaPem: await readFile(paths.tlsCa, 'utf8'),
        dom0Token: token,
      });
      log({ part: 'dom0', event: 'joined', manager: o.join.managerUrl });
    }
    return { paths, config, url: bound.url, hypervisor, dom0: d0, backend, measurements, stop };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e instanceof Error ? e : new TrustlaunchError('INTERNAL', String(e));
  }
}

/** The VM backend in the node's runtime directory (it reaps what a dead node process left there first, whichever backend made it). */
function openBackend(kind: VmBackendKind, config: NodeConfig, paths: NodePaths, o: StartNodeOptions): Promise<ProcessVmBackend | QemuVmBackend> {
  const common = {
    runtimeRoot: paths.runtime,
    capacityBytes: config.memoryMiB * MiB,
    ...(config.vm.ports === undefined ? {} : { ports: config.vm.ports }),
  };
  if (kind === 'process') return ProcessVmBackend.open({ ...o.processVms, ...common });
  const q = config.vm.qemu;
  return QemuVmBackend.open({
    ...(q?.accelerator === undefined ? {} : { accelerator: q.accelerator }),
    ...(q?.overheadMiB === undefined ? {} : { overheadBytes: q.overheadMiB * MiB }),
    ...(q?.vcpus === undefined ? {} : { vcpus: q.vcpus }),
    ...(q?.certificateWaitMs === undefined ? {} : { certificateWaitMs: q.certificateWaitMs }),
    // No certificate ever comes when attestation is off: the guest is configured at once.
    ...(config.attestation === 'off' ? { certificateWaitMs: 0 } : {}),
    ...o.qemuVms,
    ...common,
  });
}

/** The CA certificate a PEM file holds (for --manager-ca and friends). */
export async function certificateFile(path: string): Promise<Certificate> {
  return parseCertificate(await readFile(path, 'utf8'));
}
