// `trustlaunch up`: every role on this machine (src/cluster/up.ts) until Ctrl-C.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { up, MAX_NODES, UP_DEVICES, type RunningCluster, type UpDevice } from '../../cluster/up.js';
import type { ExitCode } from '../exit-codes.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { parseOnOff } from '../options.js';
import { untilStopSignal } from '../serve.js';

interface UpFlags extends OutputOptions {
  nodes?: number;
  dir?: string;
  db?: string;
  user?: string;
  attestation?: 'on' | 'off';
  device?: UpDevice;
}

function parseNodes(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODES) throw new InvalidArgumentError(`an integer 1..${MAX_NODES}`);
  return n;
}

function parseDevice(text: string): UpDevice {
  const device = UP_DEVICES.find((d) => d === text);
  if (device === undefined) throw new InvalidArgumentError(UP_DEVICES.join(', '));
  return device;
}

/** How a person reads a node's auth device. */
const DEVICE_TEXT: Readonly<Record<string, string>> = { sim: 'software TPM', swtpm: 'swtpm', 'pci-nvstore': 'pci-nvstore', tpm: 'TPM' };

/** What a user needs to use the cluster: endpoints, the CA fingerprint, the token, and the commands. */
export function clusterInfo(c: RunningCluster): { json: Record<string, unknown>; lines: string[] } {
  const s = c.summary;
  const deviceOf = (id: string): string => c.nodes.find((n) => n.config.nodeId === id)?.config.device.kind ?? 'sim';
  const env = {
    TRUSTLAUNCH_MANAGER_URL: s.manager.url,
    TRUSTLAUNCH_MANAGER_CA: c.managerCaFile,
    TRUSTLAUNCH_TOKEN: c.userToken,
  };
  const trust = `trustlaunch ca trust ${s.ca.url} --fingerprint ${s.ca.fingerprint}`;
  const json = {
    dir: c.paths.dir,
    resumed: c.resumed,
    ca: { url: s.ca.url, fingerprint: s.ca.fingerprint, identityFile: join(c.paths.ca, 'identity.json'), dir: c.paths.ca },
    manager: { url: s.manager.url, caCertFile: c.managerCaFile, dir: c.paths.manager },
    nodes: s.nodes.map((n) => ({ ...n, dir: c.paths.node(n.id), device: deviceOf(n.id) })),
    image: s.image,
    user: { name: s.user, token: c.userToken, tokenFile: c.paths.userToken },
    attestation: s.attestation,
    env,
    commands: [trust, `trustlaunch vm create --image ${s.image.name} --name hello`, 'trustlaunch vm ssh hello -- uname -a'],
  };
  const lines = [
    `trustlaunch is ${c.resumed ? 'up again' : 'up'} in ${c.paths.dir}:`,
    `  CA        ${s.ca.url}  fingerprint ${s.ca.fingerprint}`,
    `  manager   ${s.manager.url}  (TLS CA ${c.managerCaFile})`,
    ...s.nodes.map((n) => `  ${n.id.padEnd(9)} ${n.url}  (dom0; ${DEVICE_TEXT[deviceOf(n.id)] ?? deviceOf(n.id)}, process VMs${s.attestation === 'off' ? ', ATTESTATION OFF' : ''})`),
    `  image     ${s.image.name} = ${s.image.digest} (on the CA's allowlist)`,
    `  user      ${s.user}, token ${c.userToken}`,
    `            (also in ${c.paths.userToken}, mode 0600)`,
    '',
    'as that user, in another terminal:',
    `  export TRUSTLAUNCH_MANAGER_URL=${s.manager.url}`,
    `  export TRUSTLAUNCH_MANAGER_CA=${c.managerCaFile}`,
    `  export TRUSTLAUNCH_TOKEN=$(cat ${c.paths.userToken})`,
    `  ${trust}`,
    `  trustlaunch vm create --image ${s.image.name} --name hello`,
    '  trustlaunch vm ssh hello -- uname -a',
    '',
    'logs: ' + c.paths.logs,
    'press Ctrl-C to stop everything',
  ];
  return { json, lines };
}

export function registerUpCommand(program: Command): void {
  program
    .command('up')
    .description('run a CA, a manager and N nodes (process VMs; software TPM, swtpm or pci-nvstore) on this machine until Ctrl-C')
    .option('--nodes <n>', 'how many nodes (default 2)', parseNodes)
    .option('--dir <dir>', 'keep everything in DIR (a second `up --dir DIR` resumes it); default: a temporary directory removed at exit')
    .option('--db <url>', 'one database for the CA and the manager (postgres://…); default: SQLite files in DIR')
    .option('--user <name>', 'the user to create (default demo)')
    .option('--device <sim|swtpm|pci-nvstore>', "each node's auth device: sim (the software TPM, default), swtpm (its own swtpm in its node directory, stopped with it), pci-nvstore", parseDevice)
    .option('--attestation <on|off>', 'off: nodes never attest (benchmarks only)', parseOnOff)
    .option('--json', 'print one JSON document once everything is up')
    .action(
      action(async (opts: UpFlags) => {
        const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'trustlaunch-up-')));
        const temporary = opts.dir === undefined ? dir : undefined;
        const say = opts.json === true ? (): void => undefined : (line: string): void => void process.stderr.write(`${line}\n`);
        // Ctrl-C while starting: stop what started, then leave (a second Ctrl-C: at once).
        const early = untilStopSignal(() => {
          say('stopping at once');
          process.exit(130); // the nodes' exit hooks still kill their VMs
        });
        let cluster: RunningCluster | undefined;
        try {
          say(`starting in ${dir} …`);
          const starting = up({
            dir,
            ...(opts.nodes === undefined ? {} : { nodes: opts.nodes }),
            ...(opts.db === undefined ? {} : { database: opts.db }),
            ...(opts.user === undefined ? {} : { user: opts.user }),
            ...(opts.attestation === undefined ? {} : { attestation: opts.attestation }),
            ...(opts.device === undefined ? {} : { device: opts.device }),
            progress: say,
          });
          const first = await Promise.race([starting.then((c) => ({ c })), early.then(() => undefined)]);
          if (first === undefined) {
            say('interrupted: stopping');
            await (await starting.catch(() => undefined))?.stop();
            return 130 as ExitCode;
          }
          cluster = first.c;
          const info = clusterInfo(cluster);
          printResult(opts, info.json, () => info.lines);
          const signal = await early;
          say(`${signal}: stopping the manager, the nodes and their VMs, and the CA`);
          await cluster.stop();
          say('stopped');
          return 0;
        } finally {
          await cluster?.stop();
          if (temporary !== undefined) await rm(temporary, { recursive: true, force: true });
        }
      }),
    );
}
