// `trustlaunch manager …`: set up and run the cloud manager, and administer its users and
// nodes (docs/manager.md).
import { InvalidArgumentError, type Command } from 'commander';
import { initManager, DEFAULT_MANAGER_PORT } from '../../manager/init.js';
import { SCHEDULER_NAMES, type SchedulerName } from '../../manager/scheduler.js';
import { startManager } from '../../manager/server.js';
import type { NodeView, UserView } from '../../manager/http/views.js';
import { withConnectionOptions, withManager, type ConnectionFlags } from '../context.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { parsePositiveInt } from '../options.js';
import { serveUntilSignal } from '../serve.js';

type Flags = ConnectionFlags & OutputOptions;

/** HOST:PORT, [v6]:PORT or PORT. */
export function parseListen(text: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))?:?(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (m === null || !(port >= 0 && port <= 65535)) throw new InvalidArgumentError('expected HOST:PORT, [IPv6]:PORT or PORT');
  return { host: m[1] ?? m[2], port };
}

function parseScheduler(text: string): SchedulerName {
  if (!(SCHEDULER_NAMES as readonly string[]).includes(text)) throw new InvalidArgumentError(`one of ${SCHEDULER_NAMES.join(', ')}`);
  return text as SchedulerName;
}

export function registerManagerCommands(program: Command): void {
  const manager = program.command('manager').description('the cloud manager: users, images, nodes, VM placement (untrusted by design)');

  manager
    .command('init')
    .description('create a manager directory: config, TLS identity, and the admin token (shown once)')
    .requiredOption('--dir <dir>', 'the manager directory to create')
    .option('--listen <host:port>', `address to serve on (default 127.0.0.1:${DEFAULT_MANAGER_PORT})`, parseListen)
    .option('--db <url>', 'database URL (default: DIR/manager.db; postgres://… for PostgreSQL)')
    .option('--scheduler <policy>', `placement policy: ${SCHEDULER_NAMES.join(' | ')}`, parseScheduler)
    .option('--tls-name <name...>', 'extra DNS names or IP addresses for the TLS certificate')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { dir: string; listen?: { host: string | undefined; port: number }; db?: string; scheduler?: SchedulerName; tlsName?: string[]; json?: boolean }) => {
        const result = await initManager({
          dir: opts.dir,
          ...(opts.listen?.host === undefined ? {} : { listenHost: opts.listen.host }),
          ...(opts.listen === undefined ? {} : { listenPort: opts.listen.port }),
          ...(opts.db === undefined ? {} : { database: opts.db }),
          ...(opts.tlsName === undefined ? {} : { tlsNames: opts.tlsName }),
          ...(opts.scheduler === undefined ? {} : { settings: { scheduler: opts.scheduler } }),
        });
        const { listen } = result.config;
        printResult(
          opts,
          { dir: opts.dir, listen, caCertificateFile: result.paths.tlsCa, adminTokenFile: result.paths.adminToken, adminToken: result.adminToken },
          () => [
            `manager initialised in ${opts.dir} (will listen on ${listen.host}:${listen.port})`,
            `TLS CA certificate (clients pin it): ${result.paths.tlsCa}`,
            `admin token (shown once; also in ${result.paths.adminToken}, mode 0600):`,
            `  ${result.adminToken}`,
            `start it with: trustlaunch manager serve --dir ${opts.dir}`,
          ],
        );
      }),
    );

  manager
    .command('serve')
    .description('run the manager until interrupted (SIGINT/SIGTERM)')
    .requiredOption('--dir <dir>', 'the manager directory (from manager init)')
    .option('--listen <host:port>', 'override the configured address (port 0: any free port)', parseListen)
    .option('--db <url>', 'database URL (overrides the config and DATABASE_URL)')
    .option('--log-level <level>', 'pino log level on stderr (default info; "silent" for none)', 'info')
    .option('--json', 'print the start-up line as JSON')
    .action(
      action(async (opts: { dir: string; listen?: { host: string | undefined; port: number }; db?: string; logLevel: string; json?: boolean }) => {
        const running = await startManager({
          dir: opts.dir,
          ...(opts.listen?.host === undefined ? {} : { host: opts.listen.host }),
          ...(opts.listen === undefined ? {} : { port: opts.listen.port }),
          ...(opts.db === undefined ? {} : { database: opts.db }),
          logger: opts.logLevel === 'silent' ? false : { level: opts.logLevel, file: '/dev/stderr' },
        });
        const failed = [...running.reconciled.outcomes.values()].filter((s) => s === 'failed').length;
        printResult(opts, { url: running.url, database: running.database, reconciled: Object.fromEntries(running.reconciled.outcomes) }, () => [
          `manager listening on ${running.url} (database ${running.database})`,
          ...(running.reconciled.outcomes.size === 0 ? [] : [`reconciled ${running.reconciled.outcomes.size} VM(s) left mid-way (${failed} failed)`]),
        ]);
        await serveUntilSignal(() => running.close());
      }),
    );

  registerUserCommands(manager);
  registerNodeCommands(manager);
}

function registerUserCommands(manager: Command): void {
  const user = manager.command('user').description('users and their API tokens (admin)');

  withConnectionOptions(user.command('add').description('add a user and print its API token (shown once)').argument('<name>'))
    .option('--admin', 'make the user an admin (nodes, images, users)')
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, opts: Flags & { admin?: boolean }) => {
        const out = await withManager(opts, (c) =>
          c.call<{ user: UserView; token: string }>('POST', '/v1/users', { body: { name, role: opts.admin === true ? 'admin' : 'user' } }),
        );
        printResult(opts, out, () => [`user ${out.user.name} added (${out.user.role})`, 'API token (shown once; store it now):', `  ${out.token}`]);
      }),
    );

  withConnectionOptions(user.command('ls').description('list users'))
    .option('--json', 'print JSON')
    .action(
      action(async (opts: Flags) => {
        const out = await withManager(opts, (c) => c.call<{ users: UserView[] }>('GET', '/v1/users'));
        printResult(opts, out, () => table(['NAME', 'ROLE', 'CREATED'], out.users.map((u) => [u.name, u.role, u.createdAt])));
      }),
    );

  withConnectionOptions(user.command('rm').description("remove a user, its token and its VMs").argument('<name>'))
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, opts: Flags) => {
        await withManager(opts, (c) => c.call('DELETE', `/v1/users/${encodeURIComponent(name)}`));
        printResult(opts, { removed: name }, () => `user ${name} removed`);
      }),
    );
}

function registerNodeCommands(manager: Command): void {
  const node = manager.command('node').description('the node inventory (admin)');
  const token = node.command('token').description('one-time join tokens for nodes');

  withConnectionOptions(token.command('create').description('create a one-time join token (shown once)'))
    .option('--ttl <seconds>', 'how long the token stays valid (default: the config, 1 hour)', parsePositiveInt)
    .option('--json', 'print JSON')
    .action(
      action(async (opts: Flags & { ttl?: number }) => {
        const out = await withManager(opts, (c) =>
          c.call<{ token: string; expiresAt: string }>('POST', '/v1/nodes/tokens', { body: opts.ttl === undefined ? {} : { ttlSeconds: opts.ttl } }),
        );
        printResult(opts, out, () => [`join token (one use, until ${out.expiresAt}):`, `  ${out.token}`]);
      }),
    );

  withConnectionOptions(node.command('ls').description('list nodes with status and capacity'))
    .option('--json', 'print JSON')
    .action(
      action(async (opts: Flags) => {
        const out = await withManager(opts, (c) => c.call<{ nodes: NodeView[] }>('GET', '/v1/nodes'));
        printResult(opts, out, () =>
          table(
            ['ID', 'STATUS', 'MEMORY (MiB)', 'VMS', 'DEVICE', 'VM BACKEND', 'ENDPOINT'],
            out.nodes.map((n) => [n.id, n.status, `${n.memoryUsedMiB}/${n.memoryTotalMiB}`, String(n.vmCount), n.deviceKind ?? '-', n.vmBackend ?? '-', n.endpoint]),
          ),
        );
      }),
    );

  withConnectionOptions(node.command('show').description('one node and the VMs placed on it').argument('<id>'))
    .option('--json', 'print JSON')
    .action(
      action(async (id: string, opts: Flags) => {
        const out = await withManager(opts, (c) =>
          c.call<{ node: NodeView; vms: Array<{ vmId: string; name: string; state: string; memoryMiB: number }> }>('GET', `/v1/nodes/${encodeURIComponent(id)}`),
        );
        const n = out.node;
        printResult(opts, out, () => [
          `node ${n.id}: ${n.status}`,
          `  endpoint   ${n.endpoint}`,
          `  memory     ${n.memoryUsedMiB}/${n.memoryTotalMiB} MiB, ${n.vmCount} VM(s)`,
          `  health     ${n.health ?? '-'}, device ${n.deviceKind ?? '-'}, VM backend ${n.vmBackend ?? '-'}`,
          `  last seen  ${n.lastSeenAt ?? 'never'}${n.lastError === null ? '' : ` (last error: ${n.lastError})`}`,
          ...out.vms.map((v) => `  vm ${v.vmId} ${v.name} ${v.state}`),
        ]);
      }),
    );

  withConnectionOptions(node.command('rm').description("remove a node from the inventory (its running VMs are marked failed)").argument('<id>'))
    .option('--json', 'print JSON')
    .action(
      action(async (id: string, opts: Flags) => {
        await withManager(opts, (c) => c.call('DELETE', `/v1/nodes/${encodeURIComponent(id)}`));
        printResult(opts, { removed: id }, () => `node ${id} removed`);
      }),
    );
}

/** Left-aligned columns. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}
