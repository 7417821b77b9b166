// A node for a benchmark, set up as an operator would: `node init` against the bench's CA,
// its endorsement roots given to the CA, its platform allowlisted (attestation on), started
// with an enrollment token, and ready once it registered (or, attestation off, said so).
import type { CaAdminClient } from '../../src/ca/client.js';
import { addEndorsementRoot } from '../../src/ca/directory.js';
import type { VmBackendKind } from '../../src/node/config.js';
import { initNode } from '../../src/node/init.js';
import { startNode, type NodeLog, type RunningNode, type StartNodeOptions } from '../../src/node/node.js';

export interface BenchCa {
  /** The CA's directory (its endorsement roots are added there). */
  readonly dir: string;
  readonly url: string;
  /** The CA's root certificate (PEM file) the node trusts. */
  readonly rootFile: string;
  readonly admin: CaAdminClient;
}

export interface BenchNodeOptions {
  readonly dir: string;
  readonly nodeId: string;
  readonly attestation: 'on' | 'off';
  /** The allowlist name of the node's platform (attestation on). */
  readonly platform: string;
  readonly vmBackend?: VmBackendKind;
  readonly qemuVms?: StartNodeOptions['qemuVms'];
  /** Every node log line, besides the wait for `registered`. */
  readonly log?: NodeLog;
  /** Called with the node once it started, before it registered (to stop it on a failure). */
  readonly started?: (node: RunningNode) => void;
}

/** Initialises and starts a node (device `sim`, 4096 MiB, loopback); resolves once it registered. */
export async function startBenchNode(ca: BenchCa, o: BenchNodeOptions): Promise<RunningNode> {
  const n = await initNode({
    dir: o.dir,
    nodeId: o.nodeId,
    device: 'sim',
    caUrl: ca.url,
    caCertificateFile: ca.rootFile,
    listen: { host: '127.0.0.1', port: 0 },
    memoryMiB: 4096,
    attestation: o.attestation,
    ...(o.vmBackend === undefined ? {} : { vmBackend: o.vmBackend }),
  });
  for (const root of n.endorsementRoots) await addEndorsementRoot(ca.dir, root);
  if (o.attestation === 'on') {
    const m = n.measurements;
    await ca.admin.addPlatform({ name: o.platform, hypervisor: m.hypervisor, minidomain: m.minidomain, firmware: m.firmware, bootConfig: m.bootConfig });
  }
  const token = o.attestation === 'on' ? (await ca.admin.createToken()).token : undefined;
  let registered: () => void = () => undefined;
  const ready = new Promise<void>((r) => (registered = r));
  const node = await startNode({
    dir: o.dir,
    ...(token === undefined ? {} : { enrollToken: token }),
    listen: { host: '127.0.0.1', port: 0 },
    ...(o.qemuVms === undefined ? {} : { qemuVms: o.qemuVms }),
    log: (l) => {
      if (l.event === 'registered' || l.event === 'attestation-off') registered();
      o.log?.(l);
    },
  });
  o.started?.(node);
  await ready;
  return node;
}

