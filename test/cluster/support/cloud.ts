// A whole cloud for tests: `up()` (src/cluster/up.ts) in a temporary directory — the real
// CA, manager and nodes (process VMs; the software TPM, or `device`) in this process — with fast manager
// intervals, and users whose client (the real SDK) has the CA pinned with `trustCa` over
// HTTPS, each with a config directory and an Ed25519 login key of their own.
import { readFileSync } from 'node:fs';
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TrustlaunchClient } from '../../../src/client/client.js';
import { clientPaths, type ClientPaths } from '../../../src/client/paths.js';
import { trustCa } from '../../../src/client/pinned-ca.js';
import { up, type RunningCluster, type UpDevice } from '../../../src/cluster/up.js';
import { requireCommand, tempDir } from '../../support/system.js';
import { requireSwtpmTools } from '../../tpm/swtpm/support.js';
import { exec as run } from '../../support/exec.js';

export interface TestUser {
  readonly name: string;
  readonly token: string;
  readonly paths: ClientPaths;
  /** The login key's files. */
  readonly publicKeyFile: string;
  readonly privateKeyFile: string;
  /** A client of the real manager (or of `managerUrl`), closed at dispose. */
  client(o?: { managerUrl?: string; graceMs?: number; managerPollMs?: number }): Promise<TrustlaunchClient>;
  /** The environment for running the `trustlaunch` CLI as this user. */
  env(o?: { managerUrl?: string }): NodeJS.ProcessEnv;
}

export interface TestCloud {
  readonly dir: string;
  readonly cluster: RunningCluster;
  /** A user added through the manager's API, with the CA pinned in a fresh config directory. */
  addUser(name: string): Promise<TestUser>;
  /** The first user `up` created (`demo`). */
  readonly user: TestUser;
  dispose(): Promise<void>;
}

export const FAST_MANAGER = { nodePollIntervalMs: 150, nodeDownAfterFailures: 2, vmPollIntervalMs: 20, launchTimeoutMs: 60_000, stopTimeoutMs: 20_000 } as const;

/** A system tool's exit status and output (test/support/exec.ts). */
export { run };

export async function startCloud(o: { nodes?: number; database?: string; vmMemoryMiB?: number; nodeMemoryMiB?: number; device?: UpDevice } = {}): Promise<TestCloud> {
  requireCommand('/usr/sbin/sshd');
  requireCommand('ssh');
  requireCommand('ssh-keygen');
  requireCommand('ssh-keyscan');
  if (o.device === 'swtpm') requireSwtpmTools();
  const tmp = tempDir('tl-cloud-');
  const clients: TrustlaunchClient[] = [];
  let cluster: RunningCluster;
  try {
    cluster = await up({
      dir: join(tmp.path, 'cloud'),
      nodes: o.nodes ?? 2,
      ...(o.database === undefined ? {} : { database: o.database }),
      ...(o.nodeMemoryMiB === undefined ? {} : { nodeMemoryMiB: o.nodeMemoryMiB }),
      ...(o.device === undefined ? {} : { device: o.device }),
      managerSettings: { ...FAST_MANAGER, ...(o.vmMemoryMiB === undefined ? {} : { vmMemoryMiB: o.vmMemoryMiB }) },
      caThreads: 1,
    });
  } catch (e) {
    tmp.dispose();
    throw e;
  }
  const c = cluster;

  const makeUser = async (name: string, token: string): Promise<TestUser> => {
    const home = join(tmp.path, 'users', name);
    const paths = clientPaths(join(home, 'config'));
    await trustCa({ paths, url: c.summary.ca.url, fingerprint: c.summary.ca.fingerprint });
    const privateKeyFile = join(paths.dir, 'login_key');
    const keygen = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@test`, '-f', privateKeyFile]);
    if (keygen.status !== 0) throw new Error(`ssh-keygen: ${keygen.stderr}`);
    const publicKeyFile = `${privateKeyFile}.pub`;
    // The CLI finds the login key through the settings file (CONFIG/config.json).
    await writeFile(paths.settings, `${JSON.stringify({ sshKey: publicKeyFile })}\n`);
    return {
      name,
      token,
      paths,
      publicKeyFile,
      privateKeyFile,
      client: async (co = {}) => {
        const client = await TrustlaunchClient.open({
          configDir: paths.dir,
          manager: { url: co.managerUrl ?? c.manager.url, token, ca: c.manager.caCertificate },
          sshKey: publicKeyFile,
          ...(co.graceMs === undefined ? {} : { graceMs: co.graceMs }),
          ...(co.managerPollMs === undefined ? {} : { managerPollMs: co.managerPollMs }),
        });
        clients.push(client);
        return client;
      },
      env: (eo = {}) => ({
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: home,
        LANG: 'C',
        TRUSTLAUNCH_CONFIG_DIR: paths.dir,
        TRUSTLAUNCH_MANAGER_URL: eo.managerUrl ?? c.manager.url,
        TRUSTLAUNCH_MANAGER_CA: c.managerCaFile,
        TRUSTLAUNCH_TOKEN: token,
      }),
    };
  };

  const user = await makeUser(c.summary.user, c.userToken);
  return {
    dir: tmp.path,
    cluster: c,
    user,
    addUser: async (name) => {
      const { token } = await c.managerAdmin.call<{ token: string }>('POST', '/v1/users', { body: { name, role: 'user' } });
      return makeUser(name, token);
    },
    dispose: async () => {
      await Promise.allSettled(clients.map((cl) => cl.close()));
      await c.stop();
      tmp.dispose();
    },
  };
}

/** Runs the real ssh for a verified VM (the client's own argument vector, plus BatchMode). */
export async function sshToVm(client: TrustlaunchClient, ref: string, command: readonly string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const { argv } = await client.sshArguments(ref, { command, extraOptions: ['BatchMode=yes', 'ConnectTimeout=10'] });
  return run('ssh', argv, { timeoutMs: 30_000 });
}

/** The file's content, '' when it does not exist. */
export function fileText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The processes whose command line or working directory names `dir` (what `up` under `dir` may have left). */
export async function processesUnder(dir: string): Promise<Array<{ pid: number; cmdline: string }>> {
  const found: Array<{ pid: number; cmdline: string }> = [];
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ').trim();
      const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
      if (cmdline.includes(dir) || cwd.startsWith(dir)) found.push({ pid, cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}
