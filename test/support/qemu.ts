// Starting the QEMU guest of docs/guest-image.md for tests (and, later, the QEMU VM
// backend's tests): build the image when needed, pick an accelerator that really boots,
// run qemu-system-x86_64 with the VM channel on a unix socket and sshd forwarded from
// 127.0.0.1, talk the channel's JSON lines, and stop QEMU for certain.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDigest, type Digest } from '../../src/protocol/digest.js';
import { TrustlaunchError } from '../../src/protocol/errors.js';
import { chooseAccelerator, type Accelerator, type AcceleratorChoice } from '../../src/node/vm/qemu/accelerator.js';
import { requireCommand } from './system.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** Where scripts/build-guest.sh puts the guest by default. */
export const GUEST_IMAGE_DIR = join(REPO, 'guest', 'build', 'qemu');
export const CHANNEL_PORT_NAME = 'org.trustlaunch.channel.0';
/** docs/vm-channel.md: each line is at most 16 KiB. */
export const CHANNEL_MAX_LINE = 16 * 1024;

// --- the image ----------------------------------------------------------------------

export interface GuestManifest {
  readonly kernel: Digest;
  readonly initrd: Digest;
  readonly cmdline: Digest;
}

export interface GuestImage {
  readonly dir: string;
  readonly kernel: string;
  readonly initrd: string;
  /** The kernel command line, exactly (its SHA-256 is `manifest.cmdline`). */
  readonly cmdline: string;
  readonly manifest: GuestManifest;
}

/** Reads a built guest (vmlinuz, initrd.img, cmdline, manifest.json) from `dir`. */
export function readGuestImage(dir = GUEST_IMAGE_DIR): GuestImage {
  const raw: unknown = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  const m = raw as Record<string, unknown>;
  const keys = Object.keys(m).sort().join(',');
  if (keys !== 'cmdline,initrd,kernel' || !isDigest(m['kernel']) || !isDigest(m['initrd']) || !isDigest(m['cmdline'])) {
    throw new Error(`${dir}/manifest.json is not {kernel, initrd, cmdline} digests`);
  }
  return {
    dir,
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    cmdline: readFileSync(join(dir, 'cmdline'), 'utf8'),
    manifest: { kernel: m['kernel'], initrd: m['initrd'], cmdline: m['cmdline'] },
  };
}

/**
 * Runs scripts/build-guest.sh (a quick no-op when the guest is up to date; the first
 * build downloads the kernel package and takes a while) and returns the image. Throws with
 * the script's output when the build fails.
 */
export function ensureGuestImage(options: { out?: string; force?: boolean } = {}): GuestImage {
  const args = [join(REPO, 'scripts', 'build-guest.sh')];
  if (options.out !== undefined) args.push('--out', options.out);
  if (options.force === true) args.push('--force');
  const r = spawnSync('bash', args, { encoding: 'utf8', timeout: 20 * 60_000 });
  if (r.status !== 0) {
    throw new Error(`scripts/build-guest.sh failed (status ${String(r.status)}, signal ${String(r.signal)}):\n${r.stderr}${r.stdout}`);
  }
  return readGuestImage(options.out ?? GUEST_IMAGE_DIR);
}

// --- accelerator --------------------------------------------------------------------

export type { Accelerator, AcceleratorChoice } from '../../src/node/vm/qemu/accelerator.js';

/**
 * KVM when /dev/kvm opens read-write AND the guest kernel really boots under
 * `-accel kvm` (some hosts offer a /dev/kvm that cannot run a stock kernel, e.g. a
 * paravirtual nested KVM); TCG otherwise. `TRUSTLAUNCH_QEMU_ACCEL=kvm|tcg` forces a
 * choice. The QEMU backend's own probe (src/node/vm/qemu/accelerator.ts), so tests and
 * nodes share its per-boot cache.
 */
export function pickAccelerator(image: GuestImage): Promise<AcceleratorChoice> {
  return chooseAccelerator('auto', { qemu: requireCommand('qemu-system-x86_64'), kernelPath: image.kernel, initrdPath: image.initrd });
}

// --- ports ----------------------------------------------------------------------------

const portsHandedOut = new Set<number>();

/** A loopback TCP port the kernel just gave us and that this process has not handed out before. */
export async function allocatePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
      });
    });
    if (!portsHandedOut.has(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
  throw new TrustlaunchError('UNAVAILABLE', 'could not allocate a fresh loopback port');
}

// --- the guest --------------------------------------------------------------------------

export interface StartGuestOptions {
  readonly image?: GuestImage;
  /** Default: `pickAccelerator(image)`. */
  readonly accel?: Accelerator;
  readonly memoryMiB?: number;
  /** A unique word placed in QEMU's command line (`-name`), for `pgrep -f`. Default: random. */
  readonly marker?: string;
}

export interface QemuGuest {
  readonly pid: number;
  readonly accel: AcceleratorChoice;
  readonly marker: string;
  /** 127.0.0.1:<sshPort> is forwarded to the guest's port 22. */
  readonly sshPort: number;
  /** Private working directory (mode 0700): console log, channel socket, QEMU's stderr. */
  readonly dir: string;
  readonly consoleLog: string;
  readonly channelPath: string;
  /** performance.now() just before QEMU was spawned. */
  readonly startedAt: number;
  /** The full argument vector QEMU was started with. */
  readonly argv: readonly string[];
  /** What the guest printed on its serial console so far. */
  console(): string;
  /** QEMU's stderr so far. */
  stderr(): string;
  /** Connects to the VM channel (QEMU's socket); closed by stop(). */
  openChannel(timeoutMs?: number): Promise<ChannelClient>;
  /** Whether QEMU is still running. */
  running(): boolean;
  /** Kills QEMU, verifies the process is gone and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

const HOSTFWD_ATTEMPTS = 5;
const HOSTFWD_WAIT_MS = 15_000;

/** Starts the guest; resolves once QEMU runs and listens on the forwarded SSH port. */
export async function startGuest(options: StartGuestOptions = {}): Promise<QemuGuest> {
  const qemu = requireCommand('qemu-system-x86_64');
  const image = options.image ?? readGuestImage();
  const accel: AcceleratorChoice = options.accel !== undefined ? { accel: options.accel, reason: 'requested' } : await pickAccelerator(image);
  const marker = options.marker ?? `tl-qemu-${randomBytes(8).toString('hex')}`;
  if (!/^[A-Za-z0-9-]{1,64}$/.test(marker)) throw new TypeError('marker must be 1-64 letters, digits or dashes');
  let lastError = '';
  for (let attempt = 0; attempt < HOSTFWD_ATTEMPTS; attempt++) {
    const sshPort = await allocatePort();
    const dir = mkdtempSync(join(tmpdir(), 'tl-qemu-'));
    const consoleLog = join(dir, 'console.log');
    const channelPath = join(dir, 'channel.sock');
    const argv = qemuArgs({ image, accel: accel.accel, memoryMiB: options.memoryMiB ?? 256, marker, sshPort, consoleLog, channelPath });
    const startedAt = performance.now();
    const child = spawn(qemu, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => { if (stderr.length < 64 * 1024) stderr += d.toString('utf8'); });
    const exit = new Promise<void>((resolve) => child.once('exit', () => { live.delete(child); resolve(); }));
    const pid = child.pid;
    if (pid === undefined) {
      rmSync(dir, { recursive: true, force: true });
      throw new TrustlaunchError('VM_BOOT_FAILED', `could not spawn ${qemu}`);
    }
    const listening = await waitForListener(pid, sshPort, exit);
    if (!listening) {
      await killAndReap(child);
      rmSync(dir, { recursive: true, force: true });
      lastError = stderr.trim();
      if (/host forwarding|Could not set up/i.test(lastError)) continue; // the port was taken meanwhile: try another
      throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU did not start: ${lastError === '' ? 'no listener on the forwarded port' : lastError}`);
    }
    return makeGuest({ child, pid, accel, marker, sshPort, dir, consoleLog, channelPath, startedAt, argv, exit, stderr: () => stderr });
  }
  throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU could not forward a loopback port after ${HOSTFWD_ATTEMPTS} attempts: ${lastError}`);
}

function qemuArgs(o: { image: GuestImage; accel: Accelerator; memoryMiB: number; marker: string; sshPort: number; consoleLog: string; channelPath: string }): string[] {
  return [
    '-name', o.marker,
    '-accel', o.accel,
    ...(o.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-nodefaults', '-nographic', '-no-reboot',
    '-m', String(o.memoryMiB), '-smp', '1',
    '-kernel', o.image.kernel, '-initrd', o.image.initrd, '-append', o.image.cmdline,
    '-serial', `file:${o.consoleLog}`,
    // restrict=on: the guest reaches nothing outside; only the forwarded port reaches it.
    '-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${o.sshPort}-:22`,
    '-device', 'virtio-net-pci,netdev=n0,romfile=',
    '-device', 'virtio-rng-pci',
    '-device', 'virtio-serial-pci',
    '-chardev', `socket,id=ch0,path=${o.channelPath},server=on,wait=off`,
    '-device', `virtserialport,chardev=ch0,name=${CHANNEL_PORT_NAME}`,
  ];
}

function makeGuest(g: {
  child: ChildProcess; pid: number; accel: AcceleratorChoice; marker: string; sshPort: number; dir: string; consoleLog: string;
  channelPath: string; startedAt: number; argv: string[]; exit: Promise<void>; stderr: () => string;
}): QemuGuest {
  const channels: ChannelClient[] = [];
  let stopped: Promise<void> | undefined;
  return {
    pid: g.pid, accel: g.accel, marker: g.marker, sshPort: g.sshPort, dir: g.dir, consoleLog: g.consoleLog,
    channelPath: g.channelPath, startedAt: g.startedAt, argv: g.argv,
    console: () => (existsSync(g.consoleLog) ? readFileSync(g.consoleLog, 'utf8') : ''),
    stderr: g.stderr,
    running: () => g.child.exitCode === null && g.child.signalCode === null,
    async openChannel(timeoutMs = 10_000) {
      const c = await ChannelClient.connect(g.channelPath, timeoutMs);
      channels.push(c);
      return c;
    },
    stop() {
      stopped ??= (async () => {
        for (const c of channels) c.close();
        await killAndReap(g.child);
        if (processExists(g.pid)) throw new TrustlaunchError('INTERNAL', `QEMU pid ${g.pid} is still there after SIGKILL`);
        rmSync(g.dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/** True while a process with this pid exists (a zombie counts). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Pids of processes whose command line contains `marker` (pgrep -f), excluding pgrep itself. */
export function pgrepMarker(marker: string): number[] {
  requireCommand('pgrep');
  try {
    return execFileSync('pgrep', ['-f', marker], { encoding: 'utf8' }).split('\n').filter((l) => l !== '').map(Number);
  } catch (e) {
    if ((e as { status?: number }).status === 1) return []; // pgrep: nothing matched
    throw e;
  }
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { child.off('exit', onExit); resolve(false); }, timeoutMs);
    const onExit = (): void => { clearTimeout(timer); resolve(true); };
    child.once('exit', onExit);
  });
}

/** SIGTERM, then SIGKILL if QEMU lingers; resolves after Node reaped the process. */
async function killAndReap(child: ChildProcess): Promise<void> {
  if (await waitForExit(child, 0)) return;
  child.kill('SIGTERM');
  if (await waitForExit(child, 5_000)) return;
  child.kill('SIGKILL');
  if (!(await waitForExit(child, 5_000))) throw new TrustlaunchError('INTERNAL', `QEMU pid ${String(child.pid)} ignored SIGKILL`);
}

/** Waits until process `pid` holds a socket listening on 127.0.0.1:port (QEMU's hostfwd). */
async function waitForListener(pid: number, port: number, exit: Promise<void>): Promise<boolean> {
  let exited = false;
  void exit.then(() => { exited = true; });
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const deadline = performance.now() + HOSTFWD_WAIT_MS;
  while (performance.now() < deadline && !exited) {
    const inodes = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[1] === local && f[3] === '0A')
      .map((f) => f[9]);
    if (inodes.length > 0 && socketInodesOf(pid).some((i) => inodes.includes(i))) return true;
    await sleep(20);
  }
  return false;
}

function socketInodesOf(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        return m?.[1] === undefined ? [] : [m[1]];
      } catch {
        return [];
      }
    });
  } catch {
    return [];
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- the VM channel ------------------------------------------------------------------------

/** One parsed channel message: a JSON object with `"v": 1` and a string `type`. */
export interface ChannelMessage {
  readonly v: 1;
  readonly type: string;
  readonly [field: string]: unknown;
}

/**
 * The hypervisor's end of the VM channel (docs/vm-channel.md) over QEMU's unix socket:
 * newline-delimited JSON, lines bounded to 16 KiB; a malformed line is dropped and counted.
 * QEMU serves one client at a time; after close() a new client may connect and the guest
 * carries on (its writes wait while nobody is connected).
 */
export class ChannelClient {
  /** Lines dropped because they were too long, not JSON, or not `{v: 1, type: string}`. */
  malformed = 0;
  private readonly queue: ChannelMessage[] = [];
  private readonly waiters: Array<() => void> = [];
  private buffer = '';
  private discarding = false;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => { this.closed = true; this.wake(); });
    socket.on('error', () => { this.closed = true; this.wake(); });
  }

  /** Connects, retrying while QEMU has not created the socket yet. */
  static async connect(path: string, timeoutMs = 10_000): Promise<ChannelClient> {
    const deadline = performance.now() + timeoutMs;
    let last: unknown;
    while (performance.now() < deadline) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(path);
          s.once('connect', () => { s.off('error', reject); resolve(s); });
          s.once('error', reject);
        });
        return new ChannelClient(socket);
      } catch (e) {
        last = e;
        await sleep(20);
      }
    }
    throw new TrustlaunchError('TIMEOUT', `cannot connect to the VM channel ${path} within ${timeoutMs} ms`, { cause: last });
  }

  /** Sends one message as a JSON line. */
  send(message: Readonly<Record<string, unknown>>): void {
    const line = JSON.stringify(message);
    if (Buffer.byteLength(line) >= CHANNEL_MAX_LINE) throw new TypeError('channel message exceeds 16 KiB');
    this.socket.write(`${line}\n`);
  }

  /** Sends raw bytes as they are (for tests of malformed input). */
  sendRaw(data: string | Uint8Array): void {
    this.socket.write(data);
  }

  /** The next message; TIMEOUT when none arrives in time, UNAVAILABLE when the channel closed. */
  async next(timeoutMs: number): Promise<ChannelMessage> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const m = this.queue.shift();
      if (m !== undefined) return m;
      if (this.closed) throw new TrustlaunchError('UNAVAILABLE', 'the VM channel closed');
      const left = deadline - performance.now();
      if (left <= 0) throw new TrustlaunchError('TIMEOUT', `no VM channel message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done(): void { clearTimeout(timer); resolve(); }
        this.waiters.push(done);
      });
    }
  }

  /** The next message of `type`; the messages skipped on the way are returned too. */
  async waitFor(type: string, timeoutMs: number): Promise<{ message: ChannelMessage; skipped: ChannelMessage[] }> {
    const deadline = performance.now() + timeoutMs;
    const skipped: ChannelMessage[] = [];
    for (;;) {
      const m = await this.next(Math.max(0, deadline - performance.now()));
      if (m.type === type) return { message: m, skipped };
      skipped.push(m);
    }
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
    this.wake();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (this.discarding) {
        this.discarding = false; // the end of an over-long line
        continue;
      }
      this.accept(line);
    }
    if (Buffer.byteLength(this.buffer) > CHANNEL_MAX_LINE) {
      if (!this.discarding) this.malformed++;
      this.discarding = true;
      this.buffer = '';
    }
    this.wake();
  }

  private accept(line: string): void {
    if (Buffer.byteLength(line) > CHANNEL_MAX_LINE) {
      this.malformed++;
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.malformed++;
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.malformed++;
      return;
    }
    const record = value as Record<string, unknown>;
    if (record['v'] !== 1 || typeof record['type'] !== 'string') {
      this.malformed++;
      return;
    }
    this.queue.push(record as ChannelMessage);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
