// `trustlaunch vm …`: the user's commands (docs/cli.md "vm"). `create` is in vm-create.ts.
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import type { ReceiptCheck } from '../../client/client.js';
import { shellLine } from '../../client/ssh-endpoint.js';
import type { VerifiedLaunch } from '../../client/verify.js';
import type { Digest } from '../../protocol/digest.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { readSettings } from '../../client/settings.js';
import { userPaths, withUserClient, withUserOptions, type UserFlags } from '../context.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { parseDigestArg } from './ca-options.js';
import { table } from './manager.js';
import { registerVmCreate } from './vm-create.js';

type Flags = UserFlags & OutputOptions;

/** The lines every verified receipt is shown with (vm receipt, verify). */
export function launchLines(launch: VerifiedLaunch): string[] {
  const c = launch.claims;
  return [
    `  status       ${c['ear.status']}`,
    `  issuer       ${c.iss} (receipt ${c.jti})`,
    `  issued       ${new Date(c.iat * 1000).toISOString()}, valid until ${new Date(c.exp * 1000).toISOString()}`,
    `  vm           ${c.sub}${c.hostname === undefined ? '' : ` (hostname ${c.hostname})`}`,
    `  node         ${c.node}`,
    `  kernel       ${c.kernel ?? '?'}${c.allowlist === undefined ? '' : ` (allowlist entry ${c.allowlist})`}`,
    ...(c.initrd === undefined ? [] : [`  initrd       ${c.initrd}`]),
    ...(c.cmdline === undefined ? [] : [`  cmdline      ${c.cmdline}`]),
    `  nonce        ${c.eat_nonce}`,
    `  host key     ${launch.hostKeyFingerprint}`,
    ...(c.authorized_key_fp === undefined ? [] : [`  login key    ${c.authorized_key_fp}`]),
    `  checks       ${launch.passed.join(', ')}`,
    ...launch.notes.map((n) => `  note         ${n}`),
  ];
}

export function launchJson(launch: VerifiedLaunch): Record<string, unknown> {
  return { trusted: true, claims: launch.claims, hostKey: launch.hostKey, hostKeyFingerprint: launch.hostKeyFingerprint, checks: launch.passed, notes: launch.notes };
}

export function registerVmCommands(program: Command): void {
  const vm = program.command('vm').description("your VMs: launched through the manager, trusted only on the CA's receipt");
  registerVmCreate(vm);

  withUserOptions(vm.command('ls').description('list your VMs (the manager\'s view) and which of them this client verified'))
    .option('--json', 'print JSON')
    .action(
      action(async (opts: Flags) => {
        const listed = await withUserClient(opts, (c) => c.listVms());
        printResult(opts, { vms: listed.map((l) => ({ ...l.vm, verified: l.verified })) }, () =>
          table(
            ['NAME', 'ID', 'STATE', 'NODE', 'VERIFIED'],
            listed.map((l) => [l.vm.name, l.vm.vmId, l.vm.state, l.vm.node ?? '-', l.verified ? 'yes' : 'no']),
          ),
        );
      }),
    );

  withUserOptions(vm.command('show').description("one VM: the manager's view (unverified) and this client's verification").argument('<name>', 'VM name or id'))
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, opts: Flags) => {
        const { vm: v, record, verified } = await withUserClient(opts, (c) => c.showVm(name));
        printResult(opts, { vm: v, verified, ...(record === undefined ? {} : { record: { nonce: record.nonce, verifiedAt: record.verifiedAt, ca: record.ca, receipt: record.receipt } }) }, () => [
          `VM ${v.name} (${v.vmId})`,
          `  verified     ${verified ? `yes, by this client at ${record?.verifiedAt ?? '?'} (trustlaunch vm receipt ${v.name} checks it again)` : 'no: this client holds no verified receipt for it'}`,
          'the manager says (unverified):',
          `  state        ${v.state}${v.reason === null || v.reason === undefined ? '' : ` (${v.reason.code}: ${v.reason.message})`}`,
          `  node         ${v.node ?? '-'}`,
          `  image        ${v.image === undefined ? '-' : `${v.image.ref} (${v.image.digest})`}`,
          `  ssh          ${v.nodeReport?.ssh === undefined ? '-' : `${v.nodeReport.ssh.host}:${v.nodeReport.ssh.port}`}`,
        ]);
      }),
    );

  withUserOptions(vm.command('rm').description('delete a VM at the manager and forget it here (record, known_hosts lines)').argument('<name>', 'VM name or id'))
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, opts: Flags) => {
        const out = await withUserClient(opts, (c) => c.removeVm(name));
        printResult(opts, { removed: out.vmId, forgotten: out.forgotten }, () => `VM ${name} (${out.vmId}) removed${out.forgotten ? '; its known_hosts lines and record are gone' : ''}`);
      }),
    );

  withUserOptions(
    vm
      .command('ssh')
      .description('log in with the system ssh: StrictHostKeyChecking=yes against trustlaunch\'s known_hosts only, HostKeyAlias=<VM id>')
      .argument('<name>', 'VM name or id')
      .argument('[command...]', 'a command to run (after --), instead of a login shell'),
  )
    .option('--user <user>', 'login user (default: the settings\' sshUser, else your user name; process VMs accept only the node\'s OS user)')
    .option('--print', 'print the ssh command instead of running it')
    .option('--json', 'print the ssh command as JSON instead of running it')
    .action(
      action(async (name: string, command: string[], opts: Flags & { user?: string; print?: boolean }) => {
        const settings = await readSettings(userPaths(opts));
        const user = opts.user ?? settings.sshUser;
        const { argv, vmId } = await withUserClient(opts, (c) => c.sshArguments(name, { command, ...(user === undefined ? {} : { user }) }));
        if (opts.json === true || opts.print === true) {
          printResult(opts, { vmId, argv: ['ssh', ...argv], command: shellLine(['ssh', ...argv]) }, () => shellLine(['ssh', ...argv]));
          return EXIT.OK;
        }
        return runSsh(argv);
      }),
    );

  withUserOptions(vm.command('receipt').description("fetch the VM's receipt from the CA again, print it and verify it again").argument('<name>', 'VM name or id'))
    .option('--expect-kernel <digest>', 'also require this kernel digest', parseDigestArg)
    .option('--raw', 'print only the receipt (the JWT), after verifying it')
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, opts: Flags & { expectKernel?: Digest; raw?: boolean }) => {
        const r: ReceiptCheck = await withUserClient(opts, (c) => c.checkReceipt(name, opts.expectKernel));
        if (opts.raw === true && opts.json !== true) {
          process.stdout.write(`${r.receipt}\n`);
          return EXIT.OK;
        }
        printResult(opts, { vmId: r.vmId, name: r.name, receipt: r.receipt, hostCertificate: r.hostCertificate ?? null, nonceSource: r.nonceSource, changedSinceCreate: r.changedSinceCreate, ...launchJson(r.launch) }, () => [
          `receipt of VM ${r.name} (${r.vmId}), from the CA, verified again:`,
          ...launchLines(r.launch),
          ...(r.nonceSource === 'manager' ? ['  warning      this client did not create the VM: the nonce is the one the manager reports, so the receipt shows what runs, not that you asked for it'] : []),
          ...(r.changedSinceCreate ? ['  warning      the CA now serves another receipt than the one recorded at create time'] : []),
          '',
          r.receipt,
        ]);
        return EXIT.OK;
      }),
    );
}

/** Runs ssh with this terminal; Ctrl-C goes to ssh (and the remote side), not to us. */
function runSsh(argv: readonly string[]): Promise<ExitCode> {
  return new Promise((resolve, reject) => {
    const ignore = (): void => undefined;
    process.on('SIGINT', ignore);
    const child = spawn('ssh', argv, { stdio: 'inherit' });
    child.once('error', (e) => {
      process.off('SIGINT', ignore);
      reject(new TrustlaunchError('UNAVAILABLE', `cannot run ssh: ${e.message}`));
    });
    child.once('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      resolve((code ?? (signal === null ? 1 : 128 + 2)) as ExitCode);
    });
  });
}
