// Test support for process VMs: a hypervisor on the software TPM with the real process
// backend, a client key, the real OpenSSH client, and guest image variants (a behaviour
// marker, and a tampered guest that leaks its private host key to the console).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { MiniDomainCapability } from '../../../src/node/hypervisor/index.js';
import type { VmBackend } from '../../../src/node/vm/backend.js';
import { defaultGuestImage, openProcessVmBackend, type ProcessVmBackend, type ProcessVmBackendOptions } from '../../../src/node/vm/process/index.js';
import { bootTestNode, type TestNode } from '../hypervisor/node-fixture.js';
import { exec, type ExecResult } from '../../support/exec.js';
import { strictSsh, type SshOptions } from '../../support/sshd.js';
import { requireCommand, tempDir } from '../../support/system.js';

/** A node of the real hypervisor (software TPM) whose VMs a real backend runs; no CA. */
export interface BackendNode<B extends VmBackend> extends TestNode {
  readonly mini: MiniDomainCapability;
  readonly backend: B;
  readonly runtimeRoot: string;
  /** Shuts the node down (stopping every VM) and removes the runtime directory. */
  close(): Promise<void>;
}
export type ProcessNode = BackendNode<ProcessVmBackend>;

/** A runtime directory for a test node: `runtimeRoot`, or a fresh one in a temp dir removed by `dispose`. */
export function testRuntimeRoot(runtimeRoot: string | undefined, prefix: string): { runtimeRoot: string; dispose: () => void } {
  if (runtimeRoot !== undefined) return { runtimeRoot, dispose: () => undefined };
  const tmp = tempDir(prefix);
  return { runtimeRoot: join(tmp.path, 'runtime'), dispose: tmp.dispose };
}

/** The real hypervisor with `backend` as its VM runner and its mini-domain launched (it attests nothing here). */
export async function bootBackendNode<B extends VmBackend>(backend: B, root: { runtimeRoot: string; dispose: () => void }, limits?: { hostMemoryBytes: number }): Promise<BackendNode<B>> {
  const minis: MiniDomainCapability[] = [];
  const t = await bootTestNode({
    miniDomain: ({ capability }) => (minis.push(capability), { stop: () => Promise.resolve() }),
    vmRunner: backend.runner,
    ...(limits === undefined ? {} : { limits }),
  });
  await t.node.dom0.launchMiniDomain(t.image);
  const mini = minis[0];
  if (mini === undefined) throw new Error('the mini-domain did not start');
  return {
    ...t,
    mini,
    backend,
    runtimeRoot: root.runtimeRoot,
    close: async () => {
      await t.node.shutdown();
      await backend.close();
      root.dispose();
    },
  };
}

/** The real hypervisor (software TPM) with the real process backend as its VM runner. */
export async function bootProcessNode(options: Omit<ProcessVmBackendOptions, 'runtimeRoot'> & { runtimeRoot?: string } = {}): Promise<ProcessNode> {
  requireCommand('/usr/sbin/sshd');
  requireCommand('ssh-keygen');
  const root = testRuntimeRoot(options.runtimeRoot, 'tl-pvm-');
  return bootBackendNode(await openProcessVmBackend({ ...options, runtimeRoot: root.runtimeRoot }), root);
}

/** A process node and a client key, for a suite's `before`; `closeProcessNode` in its `after`. */
export async function bootProcessNodeWithKey(): Promise<{ pn: ProcessNode; key: ClientKey }> {
  return { pn: await bootProcessNode(), key: await clientKey() };
}

export async function closeProcessNode(pn: ProcessNode | undefined, key: ClientKey | undefined): Promise<void> {
  await pn?.close();
  key?.dispose();
}

/** Runs `fn` with a runtime root in a fresh temp dir (not created yet), removed afterwards. */
export async function withRuntimeRoot(prefix: string, fn: (root: string) => Promise<void>): Promise<void> {
  const tmp = tempDir(prefix);
  try {
    await fn(join(tmp.path, 'runtime'));
  } finally {
    tmp.dispose();
  }
}

/** Opens a backend on a runtime root as a restarted node would (its reaper runs first), runs `check`, closes it. */
export async function afterRestart<B extends VmBackend>(open: () => Promise<B>, check: (backend: B) => Promise<void> | void): Promise<void> {
  const backend = await open();
  try {
    await check(backend);
  } finally {
    await backend.close();
  }
}

/** A node process started from a fixture (`node --import tsx FIXTURE …`), with what it printed. */
export type FixtureProcess<T> = T & { readonly child: ChildProcess };

const fixtureProcesses: ChildProcess[] = [];

/**
 * Starts a node-process fixture and resolves with the JSON object it prints as its first
 * stdout line (it prints it once its VM runs). `killFixtureProcesses` ends what is left.
 */
export async function startFixtureProcess<T extends object>(fixture: string, args: readonly string[], timeoutMs: number): Promise<FixtureProcess<T>> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  fixtureProcesses.push(child);
  let out = '';
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the node process printed nothing in ${timeoutMs / 1000} s:\n${err}`)), timeoutMs);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl));
      }
    });
    child.once('exit', (code) => reject(new Error(`the node process exited (${String(code)}):\n${err}`)));
  });
  return { child, ...(JSON.parse(line) as T) };
}

/** SIGKILL (a crash), and waits until it exited. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/** Kills every fixture process this test file started (its `after`). */
export async function killFixtureProcesses(): Promise<void> {
  for (const c of fixtureProcesses.splice(0)) await killProcess(c);
}

export interface ClientKey {
  readonly path: string;
  /** `ssh-ed25519 AAAA… comment` */
  readonly publicKey: string;
  readonly dir: string;
  dispose(): void;
}

export async function clientKey(): Promise<ClientKey> {
  const dir = tempDir('tl-client-');
  const path = join(dir.path, 'id_ed25519');
  await run(requireCommand('ssh-keygen'), ['-q', '-t', 'ed25519', '-N', '', '-C', 'user@test', '-f', path]);
  return { path, publicKey: readFileSync(`${path}.pub`, 'utf8').trim(), dir: dir.path, dispose: dir.dispose };
}

export type RunResult = ExecResult;

/** A system tool's exit status and output, never a throw (test/support/exec.ts, 20 s by default here). */
export function run(file: string, args: readonly string[], timeoutMs = 20_000): Promise<RunResult> {
  return exec(file, args, timeoutMs);
}

/** The real `ssh` with StrictHostKeyChecking=yes and only the known_hosts content given. */
export function ssh(o: SshOptions & { port: number; key: ClientKey }): Promise<RunResult> {
  return strictSsh({ ...o, dir: o.key.dir, identity: o.key.path, user: userInfo().username });
}

/** True when nothing listens on 127.0.0.1:port (we can bind it). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The default guest plus one statement that prints `trustlaunch-guest: variant <label>` (a different image that boots the same way). */
export function guestVariant(label: string): Buffer {
  if (!/^[a-z0-9-]{1,32}$/.test(label)) throw new TypeError('label');
  return Buffer.concat([defaultGuestImage(), Buffer.from(`\nprocess.stdout.write('trustlaunch-guest: variant ${label}\\n');\n`)]);
}

// The tampered guest (leaks its private host key to the console) is the demo's own image.
export { tamperedGuestImage } from '../../../src/cluster/tampered-image.js';
