// A real OpenSSH server and client for tests (platform.md §4): /usr/sbin/sshd with its own
// config in a temp dir, listening on 127.0.0.1 only, public-key login as the current OS
// user with a generated client key, optionally serving a host certificate. `ssh()` runs
// the real client with StrictHostKeyChecking=yes and a known_hosts file the test supplies.
// Always `await sshd.stop()` in an `after` hook.
//
//   const sshd = await startSshd({ certify: (hostKey) => issueHostCertificate({ …, hostKey }) });
//   const r = await sshd.ssh({ knownHosts: `@cert-authority vm-1.test ${caLine}\n`, hostKeyAlias: 'vm-1.test', command: 'echo ok' });
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { exec, type ExecResult } from './exec.js';
import { requireCommand, tempDir } from './system.js';

export interface SshdOptions {
  /** Host key type, generated with ssh-keygen (default ed25519). */
  readonly hostKeyType?: 'ed25519' | 'ecdsa';
  /** Given the host public key line, returns the OpenSSH certificate line to serve as HostCertificate. */
  readonly certify?: (hostPublicKey: string) => string | Promise<string>;
  /** Milliseconds to wait for "Server listening" (default 10 s). */
  readonly startTimeoutMs?: number;
}

export type SshResult = ExecResult;

export interface SshOptions {
  /** Content of the only known_hosts file the client consults. */
  readonly knownHosts: string;
  /** Name the client checks the host key (or certificate principal) against, instead of 127.0.0.1. */
  readonly hostKeyAlias?: string;
  readonly command: string;
  readonly timeoutMs?: number;
}

export interface Sshd {
  readonly port: number;
  readonly user: string;
  /** The server's plain host public key line. */
  readonly hostPublicKey: string;
  /** The certificate served, when `certify` was given. */
  readonly hostCertificate: string | undefined;
  readonly clientKeyPath: string;
  readonly dir: string;
  /** sshd's log so far (stderr with -e). */
  log(): string;
  ssh(opts: SshOptions): Promise<SshResult>;
  stop(): Promise<void>;
}


let knownHostsFiles = 0;

/**
 * The real `ssh` to 127.0.0.1:`port` as a user who trusts only `knownHosts` (written to a
 * fresh file in `dir`): StrictHostKeyChecking=yes, no config file, no agent, only `identity`.
 */
export async function strictSsh(o: SshOptions & { readonly dir: string; readonly identity: string; readonly port: number; readonly user: string }): Promise<SshResult> {
  const knownHostsPath = join(o.dir, `known_hosts.${knownHostsFiles++}`);
  writeFileSync(knownHostsPath, o.knownHosts);
  const args = [
    '-F', '/dev/null',
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${knownHostsPath}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'ConnectTimeout=10',
    ...(o.hostKeyAlias === undefined ? [] : ['-o', `HostKeyAlias=${o.hostKeyAlias}`]),
    '-i', o.identity,
    '-p', String(o.port),
    `${o.user}@127.0.0.1`,
    o.command,
  ];
  return exec(requireCommand('ssh'), args, o.timeoutMs ?? 20_000);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function keygen(type: 'ed25519' | 'ecdsa', path: string, comment: string): Promise<string> {
  const r = await exec(requireCommand('ssh-keygen'), ['-q', '-t', type, ...(type === 'ecdsa' ? ['-b', '256'] : []), '-N', '', '-C', comment, '-f', path], 10_000);
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
  return readFileSync(`${path}.pub`, 'utf8').trim();
}

function waitForListening(child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`sshd did not start within ${timeoutMs} ms:\n${output()}`)), timeoutMs);
    const onData = (): void => {
      if (/Server listening on 127\.0\.0\.1 port/.test(output())) done();
    };
    const onExit = (code: number | null): void => done(new Error(`sshd exited (${code}) before listening:\n${output()}`));
    function done(error?: Error): void {
      clearTimeout(timer);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      if (error === undefined) resolve();
      else reject(error);
    }
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
    onData();
  });
}

export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  requireCommand('ssh');
  const sshdPath = '/usr/sbin/sshd';
  requireCommand(sshdPath);
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation directory
  const tmp = tempDir('tl-sshd-');
  const dir = tmp.path;
  const user = userInfo().username;
  const hostKeyPath = join(dir, 'host_key');
  const hostPublicKey = await keygen(opts.hostKeyType ?? 'ed25519', hostKeyPath, 'host');
  const clientKeyPath = join(dir, 'client_key');
  writeFileSync(join(dir, 'authorized_keys'), `${await keygen('ed25519', clientKeyPath, 'client')}\n`, { mode: 0o600 });
  const hostCertificate = opts.certify === undefined ? undefined : (await opts.certify(hostPublicKey)).trim();
  if (hostCertificate !== undefined) writeFileSync(`${hostKeyPath}-cert.pub`, `${hostCertificate}\n`);

  let child: ChildProcess | undefined;
  let output = '';
  for (let attempt = 0; attempt < 3 && child === undefined; attempt++) {
    const port = await freePort();
    const config = [
      `ListenAddress 127.0.0.1`,
      `Port ${port}`,
      `HostKey ${hostKeyPath}`,
      ...(hostCertificate === undefined ? [] : [`HostCertificate ${hostKeyPath}-cert.pub`]),
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'StrictModes no', // the temp dir lives under the world-writable /tmp
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding no',
      'X11Forwarding no',
      'PrintMotd no',
      'PidFile none',
      'LogLevel VERBOSE',
    ].join('\n');
    const configPath = join(dir, 'sshd_config');
    writeFileSync(configPath, `${config}\n`);
    output = '';
    const candidate = spawn(sshdPath, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    candidate.stderr.setEncoding('utf8');
    candidate.stderr.on('data', (d: string) => {
      if (output.length < 1 << 20) output += d;
    });
    try {
      await waitForListening(candidate, () => output, opts.startTimeoutMs ?? 10_000);
      child = candidate;
      const sshd = makeSshd({ child, port, user, dir, hostPublicKey, hostCertificate, clientKeyPath, log: () => output, dispose: tmp.dispose });
      return sshd;
    } catch (e) {
      candidate.kill('SIGKILL');
      if (!/Address already in use|Bind to port/.test(output) || attempt === 2) {
        tmp.dispose();
        throw e;
      }
    }
  }
  tmp.dispose();
  throw new Error('sshd did not start');
}

interface SshdState {
  readonly child: ChildProcess;
  readonly port: number;
  readonly user: string;
  readonly dir: string;
  readonly hostPublicKey: string;
  readonly hostCertificate: string | undefined;
  readonly clientKeyPath: string;
  readonly log: () => string;
  readonly dispose: () => void;
}

function makeSshd(s: SshdState): Sshd {
  let stopped = false;
  return {
    port: s.port,
    user: s.user,
    dir: s.dir,
    hostPublicKey: s.hostPublicKey,
    hostCertificate: s.hostCertificate,
    clientKeyPath: s.clientKeyPath,
    log: s.log,
    async ssh(o: SshOptions): Promise<SshResult> {
      return strictSsh({ ...o, dir: s.dir, identity: s.clientKeyPath, port: s.port, user: s.user });
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      const { child } = s;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      s.dispose();
    },
  };
}
