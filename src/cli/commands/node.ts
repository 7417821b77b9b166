// `trustlaunch node …`: create a node directory (device manufactured, boot configuration
// with the launch policy, mini-domain image, dom0 identity), run the node, and look at it
// (docs/node.md). Secrets never go on the command line: the enrollment and join tokens
// come from files (mode 0600) or the environment.
import { dirname } from 'node:path';
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { readSecretFile } from '../../crypto/files.js';
import { parseCertificate } from '../../crypto/x509.js';
import { JsonClient } from '../../http/client.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { DEVICE_KINDS, VM_BACKENDS, nodePaths, type NodeDeviceKind, type VmBackendKind } from '../../node/config.js';
import { initNode, measureNode } from '../../node/init.js';
import { startNode, type NodeLog } from '../../node/node.js';
import type { NodeView } from '../../node/dom0/api.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { parseOnOff, parsePositiveInt } from '../options.js';
import { serveUntilSignal } from '../serve.js';

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (m === null || !(port >= 0 && port <= 65535)) throw new InvalidArgumentError('expected HOST:PORT or [IPv6]:PORT');
  return { host: (m[1] ?? m[2]) as string, port };
}

function parseDevice(text: string): { kind: NodeDeviceKind; path?: string } {
  if (text.startsWith('tpm:')) return { kind: 'tpm', path: text.slice(4) };
  if (!(DEVICE_KINDS as readonly string[]).includes(text)) throw new InvalidArgumentError(`one of ${DEVICE_KINDS.join(', ')} or tpm:/dev/tpmrmN`);
  return { kind: text as NodeDeviceKind };
}

function parseVmBackend(text: string): VmBackendKind {
  if (!(VM_BACKENDS as readonly string[]).includes(text)) throw new InvalidArgumentError(VM_BACKENDS.join(' or '));
  return text as VmBackendKind;
}

/** A secret from a 0600 file, else from the environment variable, else undefined. */
async function secret(file: string | undefined, env: string): Promise<string | undefined> {
  if (file !== undefined) return (await readSecretFile(file)).toString('utf8').trim();
  const v = process.env[env];
  return v === undefined || v === '' ? undefined : v.trim();
}

/** `qemu VMs, accelerator tcg (auto: …why…)` */
function vmBackendLine(vm: NodeView['vm']): string {
  const a = vm.accelerator;
  if (a === undefined) return `${vm.backend} VMs`;
  return `${vm.backend} VMs, accelerator ${a.accel ?? `${a.setting} (chosen at the first boot)`}${a.accel === null ? '' : ` (${a.setting}: ${a.reason ?? ''})`}`;
}

export function registerNodeCommands(program: Command): void {
  const node = program.command('node').description('a node: trusted hypervisor model, mini-domain (attestation agent) and dom0 (the manager\'s agent)');

  node
    .command('init')
    .description('create a node directory: manufacture the auth device, freeze the launch policy, print the boot measurements a CA needs')
    .requiredOption('--dir <dir>', 'the node directory to create')
    .option('--node-id <id>', 'the node id (a DNS label; default node-<random>)')
    .option('--device <kind>', `auth device: ${DEVICE_KINDS.join(' | ')} | tpm:/dev/tpmrmN (default sim)`, parseDevice)
    .option('--memory <MiB>', 'memory offered to VMs (default 4096)', parsePositiveInt)
    .option('--max-vms <n>', 'most VMs at once (default 64)', parsePositiveInt)
    .option('--ca <url>', "the CA's URL (default https://127.0.0.1:8443)")
    .option('--ca-cert <file>', "the CA's certificate (PEM), trusted for the first registration only")
    .option('--listen <host:port>', "dom0's HTTPS address (default 127.0.0.1:9443)", parseListen)
    .option('--attestation <on|off>', 'off only for benchmarks and development: VMs are never attested', parseOnOff)
    .option('--vm-backend <kind>', 'process (guest programs, default) or qemu (Linux guests under QEMU: KVM or TCG)', parseVmBackend)
    .option('--force', 'replace an existing node directory and remanufacture its device')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { dir: string; nodeId?: string; device?: { kind: NodeDeviceKind; path?: string }; memory?: number; maxVms?: number; ca?: string; caCert?: string; listen?: { host: string; port: number }; attestation?: 'on' | 'off'; vmBackend?: VmBackendKind; force?: boolean; json?: boolean }) => {
        const r = await initNode({
          dir: opts.dir,
          ...(opts.nodeId === undefined ? {} : { nodeId: opts.nodeId }),
          ...(opts.device === undefined ? {} : { device: opts.device.kind }),
          ...(opts.device?.path === undefined ? {} : { tpmPath: opts.device.path }),
          ...(opts.memory === undefined ? {} : { memoryMiB: opts.memory }),
          ...(opts.maxVms === undefined ? {} : { maxVms: opts.maxVms }),
          ...(opts.ca === undefined ? {} : { caUrl: opts.ca }),
          ...(opts.caCert === undefined ? {} : { caCertificateFile: opts.caCert }),
          ...(opts.listen === undefined ? {} : { listen: opts.listen }),
          ...(opts.attestation === undefined ? {} : { attestation: opts.attestation }),
          ...(opts.vmBackend === undefined ? {} : { vmBackend: opts.vmBackend }),
          ...(opts.force === true ? { force: true } : {}),
        });
        const m = r.measurements;
        printResult(
          opts,
          {
            dir: opts.dir,
            nodeId: r.config.nodeId,
            device: r.config.device.kind,
            vmBackend: r.config.vm.backend,
            measurements: m,
            measurementsFile: r.paths.measurements,
            endorsementRoots: r.endorsementRoots,
            dom0: { listen: r.config.dom0.listen, caCertificateFile: r.paths.tlsCa, tokenFile: r.paths.dom0Token },
            bootConfigFile: r.paths.bootConfig,
            miniDomainImage: r.paths.miniDomainImage,
          },
          () => [
            `node ${r.config.nodeId} initialised in ${opts.dir} (device ${r.config.device.kind}, ${r.config.vm.backend} VMs)`,
            'boot measurements (the CA\'s platform reference values):',
            `  firmware    ${m.firmware}`,
            `  hypervisor  ${m.hypervisor}`,
            `  bootConfig  ${m.bootConfig}`,
            `  minidomain  ${m.minidomain}`,
            `  (also in ${r.paths.measurements})`,
            ...(r.endorsementRoots.length === 0 ? ['endorsement root: the TPM vendor\'s EK CA'] : r.endorsementRoots.map((p) => `endorsement root the CA must trust: ${p}`)),
            `dom0: https://${r.config.dom0.listen.host}:${r.config.dom0.listen.port} (TLS CA ${r.paths.tlsCa}; manager token in ${r.paths.dom0Token}, mode 0600)`,
            `start it with: trustlaunch node serve --dir ${opts.dir} --enroll-token-file FILE`,
          ],
        );
      }),
    );

  node
    .command('serve')
    .description('run the node (hypervisor, mini-domain, dom0) until SIGINT/SIGTERM; VMs stop with it')
    .option('--dir <dir>', 'the node directory (from node init)')
    .option('--config <file>', 'the node config (its directory is the node directory)')
    .option('--listen <host:port>', "override dom0's address (port 0: any free port)", parseListen)
    .option('--enroll-token-file <file>', 'the CA enrollment token for the first registration (mode 0600; env TRUSTLAUNCH_ENROLL_TOKEN)')
    .option('--manager <url>', 'join this manager once dom0 listens')
    .option('--manager-ca <file>', "PEM of the CA the manager's TLS certificate chains to")
    .option('--join-token-file <file>', 'the manager join token (mode 0600; env TRUSTLAUNCH_JOIN_TOKEN)')
    .option('--endpoint <url>', "dom0's URL as the manager should reach it (default: the bound address)")
    .option('--vm-backend <kind>', "override the config's VM backend: process or qemu", parseVmBackend)
    .option('--log-level <level>', 'info (JSON lines on stderr) or silent', 'info')
    .option('--json', 'print the start-up line as JSON')
    .action(
      action(async (opts: { dir?: string; config?: string; listen?: { host: string; port: number }; enrollTokenFile?: string; manager?: string; managerCa?: string; joinTokenFile?: string; endpoint?: string; vmBackend?: VmBackendKind; logLevel: string; json?: boolean }) => {
        const dir = opts.dir ?? (opts.config === undefined ? undefined : dirname(opts.config));
        if (dir === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'give --dir or --config');
        const enrollToken = await secret(opts.enrollTokenFile, 'TRUSTLAUNCH_ENROLL_TOKEN');
        let join;
        if (opts.manager !== undefined) {
          const joinToken = await secret(opts.joinTokenFile, 'TRUSTLAUNCH_JOIN_TOKEN');
          if (joinToken === undefined || opts.managerCa === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'joining a manager needs --manager-ca and a join token (--join-token-file or TRUSTLAUNCH_JOIN_TOKEN)');
          join = { managerUrl: opts.manager, managerCa: parseCertificate(await readFile(opts.managerCa, 'utf8')), joinToken, ...(opts.endpoint === undefined ? {} : { endpoint: opts.endpoint }) };
        }
        const log: NodeLog = opts.logLevel === 'silent' ? () => undefined : (line) => process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...line })}\n`);
        const running = await startNode({
          dir,
          ...(opts.config === undefined ? {} : { configPath: opts.config }),
          ...(enrollToken === undefined ? {} : { enrollToken }),
          ...(opts.listen === undefined ? {} : { listen: opts.listen }),
          ...(join === undefined ? {} : { join }),
          ...(opts.vmBackend === undefined ? {} : { vmBackend: opts.vmBackend }),
          log,
        });
        const status = running.hypervisor.status();
        printResult(opts, { nodeId: running.hypervisor.nodeId, url: running.url, device: status.authDevice.kind, vmBackend: running.backend.kind, miniDomain: status.miniDomain, measurements: running.measurements }, () => [
          `node ${running.hypervisor.nodeId} serving dom0 on ${running.url} (device ${status.authDevice.kind} at ${status.authDevice.bdf}; mini-domain ${status.miniDomain.state}; ${running.backend.kind} VMs)`,
        ]);
        await serveUntilSignal(() => running.stop());
      }),
    );

  node
    .command('status')
    .description("ask a running node's dom0 for its status and VMs")
    .requiredOption('--dir <dir>', 'the node directory (its endpoint, TLS CA and token)')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { dir: string } & OutputOptions) => {
        const paths = nodePaths(opts.dir);
        const url = (await readFile(paths.endpoint, 'utf8')).trim();
        const client = new JsonClient({ baseUrl: url, ca: await readFile(paths.tlsCa, 'utf8'), token: (await readSecretFile(paths.dom0Token)).toString('utf8').trim(), timeoutMs: 5000, unreachableCode: 'NODE_UNREACHABLE' });
        try {
          const n = await client.call<NodeView>('GET', '/v1/node');
          const v = await client.call<{ vms: Array<{ vmId: string; state: string; attestation: { state: string; code?: string }; ssh?: { host: string; port: number } }> }>('GET', '/v1/vms');
          printResult(opts, { node: n, vms: v.vms }, () => [
            `node ${n.id}: ${n.health}; mini-domain ${n.miniDomain.state} (launches ${n.miniDomain.launches}); device ${n.device.kind} at ${n.device.bdf}`,
            `memory ${n.capacity.memoryMiB.used}/${n.capacity.memoryMiB.total} MiB, ${n.vmCount} VM(s); ${vmBackendLine(n.vm)}`,
            ...v.vms.map((vm) => `  ${vm.vmId} ${vm.state} attestation ${vm.attestation.state}${vm.attestation.code === undefined ? '' : ` (${vm.attestation.code})`}${vm.ssh === undefined ? '' : ` ssh ${vm.ssh.host}:${vm.ssh.port}`}`),
          ]);
        } finally {
          await client.close();
        }
      }),
    );

  node
    .command('measurements')
    .description('print the boot measurements of a node directory as this installation will boot it (after an upgrade, give them to the CA again)')
    .requiredOption('--dir <dir>', 'the node directory')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { dir: string } & OutputOptions) => {
        const m = await measureNode(nodePaths(opts.dir));
        printResult(opts, m, () => Object.entries(m).map(([k, d]) => `${k.padEnd(11)} ${d}`));
      }),
    );
}
