// `trustlaunch vm create`: the launch as the user sees it — stages while waiting (the
// manager's word, marked as such), then the CA's verdict and every check by name. On
// success the VM's known_hosts lines are written and the ssh command printed; on failure
// the failing check is named, nothing is written, and the exit code says why (docs/cli.md).
import type { Command } from 'commander';
import type { CreatedVm, LaunchStage } from '../../client/create.js';
import type { ManagerVm } from '../../client/manager-api.js';
import { sshArguments, shellLine } from '../../client/ssh-endpoint.js';
import { userInfo } from 'node:os';
import type { TrustlaunchClient } from '../../client/client.js';
import { isTrustlaunchError, TrustlaunchError } from '../../protocol/errors.js';
import type { Digest } from '../../protocol/digest.js';
import { withUserClient, withUserOptions, type UserFlags } from '../context.js';
import { EXIT } from '../exit-codes.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { createProgress, type Progress } from '../progress.js';
import { parseDigestArg, parseDuration } from './ca-options.js';

interface CreateFlags extends UserFlags, OutputOptions {
  image: string;
  name?: string;
  expectKernel?: Digest;
  timeout?: number;
  probe: boolean;
}

function stageText(stage: LaunchStage, vm: ManagerVm | undefined): string {
  const id = vm === undefined ? '' : `${vm.name} (${vm.vmId})`;
  switch (stage) {
    case 'requested':
      return 'asking the manager for a VM, with a fresh 32-byte nonce';
    case 'scheduled':
      return `${id} scheduled${vm?.node === null || vm?.node === undefined ? '' : ` on ${vm.node}`}; waiting for the CA's receipt`;
    case 'booting':
      return `${id} booting${vm?.node === null || vm?.node === undefined ? '' : ` on ${vm.node}`} (the manager says)`;
    case 'attesting':
      return `${id} attesting: the node's mini-domain is asking the CA (the manager says)`;
    case 'receipt':
      return `receipt from the CA for ${id}; verifying it`;
    case 'verified':
      return `${id} verified`;
  }
}

export function createdJson(c: CreatedVm, client: TrustlaunchClient, sshArgv: readonly string[] | undefined): Record<string, unknown> {
  const claims = c.launch.claims;
  return {
    trusted: true,
    vm: { vmId: c.vm.vmId, name: c.vm.name, hostname: claims.hostname, node: claims.node, image: c.record.image },
    receipt: { jwt: c.record.receipt, claims },
    hostCertificate: c.record.hostCertificate,
    checks: [...c.launch.passed, ...(c.probed ? ['endpoint'] : [])],
    notes: [...c.launch.notes, ...(c.probed ? [] : ['endpoint: the SSH endpoint was not probed (none reported, or it did not answer in time)'])],
    knownHosts: client.paths.knownHosts,
    record: `${client.paths.vms}/${c.vm.vmId}.json`,
    ssh: { command: `trustlaunch vm ssh ${c.vm.name}`, argv: sshArgv === undefined ? null : ['ssh', ...sshArgv] },
    timingsMs: c.timings,
  };
}

function createdLines(c: CreatedVm, client: TrustlaunchClient, sshArgv: readonly string[] | undefined): string[] {
  const claims = c.launch.claims;
  const checks = [...c.launch.passed, ...(c.probed ? ['endpoint'] : [])];
  return [
    `VM ${c.vm.name} (${c.vm.vmId}) is trusted: the CA affirms it`,
    `  receipt      ${claims.jti} from ${claims.iss}, valid until ${new Date(claims.exp * 1000).toISOString()}`,
    `  kernel       ${claims.kernel ?? '?'}${claims.allowlist === undefined ? '' : ` (allowlist entry ${claims.allowlist})`}`,
    `  node         ${claims.node} (registered and measured, says the CA)`,
    `  host key     ${c.launch.hostKeyFingerprint}`,
    `  checks       ${checks.join(', ')}`,
    ...c.launch.notes.map((n) => `  note         ${n}`),
    `  known_hosts  ${client.paths.knownHosts} (host key and @cert-authority lines for ${c.vm.vmId})`,
    'log in with:',
    `  trustlaunch vm ssh ${c.vm.name}`,
    ...(sshArgv === undefined ? [] : ['  # or, the same with ssh itself:', `  ${shellLine(['ssh', ...sshArgv])}`]),
  ];
}

/** The refusal, told in a sentence, then rethrown with the VM it concerns (action() prints it and picks the exit code). */
function refused(e: unknown, vm: ManagerVm | undefined, progress: Progress): never {
  if (!isTrustlaunchError(e)) throw e;
  const check = e.detail?.['check'];
  const untrusted = e.kind === 'crypto' || e.kind === 'policy';
  const what = vm === undefined ? 'the VM' : `VM ${vm.name} (${vm.vmId})`;
  progress.fail(untrusted ? `${what} is NOT trusted: check ${typeof check === 'string' ? check : e.code} failed` : `${what}: ${e.code}`);
  if (vm !== undefined) {
    progress.note('nothing was written to known_hosts');
    progress.note(`the VM may still exist at the manager: remove it with \`trustlaunch vm rm ${vm.name}\``);
  }
  throw new TrustlaunchError(e.code, e.message, { cause: e, detail: { ...e.detail, ...(vm === undefined ? {} : { vmId: vm.vmId, name: vm.name }) } });
}

export function registerVmCreate(vm: Command): void {
  withUserOptions(vm.command('create').description('launch a VM and trust it only once the CA has affirmed it (writes known_hosts on success only)'))
    .requiredOption('--image <name>', 'an image name or digest known to the manager')
    .option('--name <name>', 'a name for the VM (a DNS label); default: the manager picks one')
    .option('--ssh-key <pubkey>', 'your login key (a .pub file); default ~/.ssh/id_ed25519.pub, ~/.ssh/id_ecdsa.pub, else one trustlaunch generates')
    .option('--expect-kernel <digest>', 'refuse unless the attested kernel is exactly this sha256:… digest', parseDigestArg)
    .option('--timeout <duration>', 'how long to wait for the receipt (default 180s)', parseDuration)
    .option('--no-probe', "do not check the host key the VM's SSH server presents")
    .option('--json', 'print JSON')
    .action(
      action(async (opts: CreateFlags) => {
        const progress = createProgress(opts);
        let current: ManagerVm | undefined;
        return withUserClient(opts, async (client) => {
          let created: CreatedVm;
          try {
            created = await client.createVm({
              image: opts.image,
              ...(opts.name === undefined ? {} : { name: opts.name }),
              ...(opts.expectKernel === undefined ? {} : { expectKernel: opts.expectKernel }),
              ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
              probe: opts.probe,
              onStage: (stage, vm) => {
                current = vm ?? current;
                if (stage !== 'verified') progress.step(stageText(stage, vm));
              },
            });
          } catch (e) {
            refused(e, current, progress);
          }
          const argv = created.endpoint === undefined ? undefined : sshArguments({
            endpoint: created.endpoint,
            alias: created.vm.vmId,
            knownHostsFile: client.paths.knownHosts,
            user: userInfo().username,
            identityFile: created.record.loginKey.privateKeyFile,
          });
          progress.succeed(stageText('verified', created.vm));
          printResult(opts, createdJson(created, client, argv), () => createdLines(created, client, argv));
          return EXIT.OK;
        });
      }),
    );
}
