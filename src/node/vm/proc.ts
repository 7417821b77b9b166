// What the VM backends know about running processes, read from Linux /proc (proc(5)):
// start times (field 22 of /proc/PID/stat, so a reused pid is never mistaken for ours),
// parents (field 4), markers, resident memory, listening sockets. And the one way a VM
// ends for certain: `sweep` kills its processes round after round until none is left.
// (A QEMU VM is one process: QEMU, carrying the marker and naming its VM directory.)
//
// A process belongs to a VM when it is the guest (pid + start time), when its exec-time
// environment carries the VM's marker (the guest, and every login session: the guest's
// sshd_config has `SetEnv`), when its command line names the VM's private directory (the
// sshd listener: `-f <vm dir>/…/sshd_config`; sshd's setproctitle clobbers its environment
// area, so the marker alone misses it, and it chdirs to /), or when it descends from one
// of those (per-connection sshd processes, which sshd moves into sessions of their own).
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** The environment variable that marks every process of one VM (the guest, sshd, sessions). */
export const MARKER_VARIABLE = 'TRUSTLAUNCH_VM_MARKER';

export interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  /** One letter; `Z` (zombie) and `X` (dead) no longer run. */
  readonly state: string;
  /** Clock ticks since boot: with the pid, identifies one process for its whole life. */
  readonly startTime: string;
}

/** Parses /proc/PID/stat; the command name (field 2) may hold spaces and parentheses. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const f = text.slice(close + 2).split(' '); // f[0] is field 3 (state)
  const state = f[0];
  const ppid = Number(f[1]);
  const startTime = f[19];
  if (state === undefined || startTime === undefined || !Number.isInteger(ppid) || !/^[0-9]+$/.test(startTime)) return undefined;
  return { pid, ppid, state, startTime };
}

const running = (s: ProcStat | undefined): s is ProcStat => s !== undefined && s.state !== 'Z' && s.state !== 'X';

/** True while `pid` runs (not a zombie) and, when given, still has `startTime`. */
export function isRunning(pid: number, startTime?: string): boolean {
  const s = procStat(pid);
  return running(s) && (startTime === undefined || s.startTime === startTime);
}

export function ownStartTime(): string {
  const s = procStat(process.pid);
  if (s === undefined) throw new Error('cannot read /proc/self/stat: the process backend needs Linux /proc');
  return s.startTime;
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((n) => /^[0-9]+$/.test(n))
    .map(Number);
}

function carriesMarker(pid: number, needle: Buffer): boolean {
  try {
    return Buffer.concat([Buffer.from([0]), readFileSync(`/proc/${pid}/environ`)]).includes(needle);
  } catch {
    return false;
  }
}

function commandLineNames(pid: number, needle: Buffer): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`).includes(needle);
  } catch {
    return false;
  }
}

/** How to recognise one VM's processes. */
export interface VmIdentity {
  /** The value of TRUSTLAUNCH_VM_MARKER. */
  readonly marker: string;
  /** The guest process, while it has this start time. */
  readonly root?: { readonly pid: number; readonly startTime: string } | undefined;
  /** The VM's private directory: a command line naming it belongs to the VM. */
  readonly dir?: string | undefined;
}

/** The running processes of one VM (see the header), never this process. */
export function vmProcesses(vm: VmIdentity): ProcStat[] {
  const { marker, root } = vm;
  const needle = Buffer.from(`\0${MARKER_VARIABLE}=${marker}\0`);
  const dirNeedle = vm.dir === undefined ? undefined : Buffer.from(`${vm.dir}/`);
  const table = new Map<number, ProcStat>();
  for (const pid of pids()) {
    const s = procStat(pid);
    if (running(s)) table.set(pid, s);
  }
  const found = new Map<number, ProcStat>();
  for (const s of table.values()) {
    if (s.pid === process.pid) continue;
    const isRoot = root !== undefined && s.pid === root.pid && s.startTime === root.startTime;
    if (isRoot || carriesMarker(s.pid, needle) || (dirNeedle !== undefined && commandLineNames(s.pid, dirNeedle))) found.set(s.pid, s);
  }
  // Descendants, to a fixed point (bounded by the table's size).
  for (let grew = true, rounds = 0; grew && rounds < table.size; rounds++) {
    grew = false;
    for (const s of table.values()) {
      if (!found.has(s.pid) && found.has(s.ppid) && s.pid !== process.pid) {
        found.set(s.pid, s);
        grew = true;
      }
    }
  }
  return [...found.values()];
}

/** Sum of VmRSS over the VM's processes, in bytes. */
export function residentBytes(processes: readonly ProcStat[]): number {
  let total = 0;
  for (const p of processes) {
    try {
      const m = /^VmRSS:\s+([0-9]+) kB$/m.exec(readFileSync(`/proc/${p.pid}/status`, 'latin1'));
      if (m?.[1] !== undefined) total += Number(m[1]) * 1024;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface SweepResult {
  /** Pids that were sent SIGKILL. */
  readonly killed: readonly number[];
  /** Processes still running when the bound ran out (empty on success). */
  readonly survivors: readonly ProcStat[];
}

/**
 * SIGKILLs the VM's processes until none runs, at most `timeoutMs`. Killed processes
 * cannot fork any more, so each round only finds what the previous one missed.
 */
export async function sweep(vm: VmIdentity, timeoutMs = 5000): Promise<SweepResult> {
  const killed = new Set<number>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = vmProcesses(vm);
    if (left.length === 0) return { killed: [...killed], survivors: [] };
    if (Date.now() > deadline) return { killed: [...killed], survivors: left };
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
        killed.add(p.pid);
      } catch {
        // exited meanwhile
      }
    }
    await sleep(5);
  }
}

/** Synchronous best effort for `process.on('exit')`: one round of SIGKILL. */
export function killNow(vm: VmIdentity): void {
  for (const p of vmProcesses(vm)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}

/** Inodes of the sockets process `pid` holds open (its /proc/PID/fd links `socket:[N]`). */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** Whether process `pid` itself holds a TCP socket listening on 127.0.0.1:`port` (/proc/net/tcp, state 0A). */
export function holdsListener(pid: number, port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let table: string;
  try {
    table = readFileSync('/proc/net/tcp', 'latin1');
  } catch {
    return false;
  }
  const listening = table
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === local && f[3] === '0A')
    .map((f) => f[9]);
  if (listening.length === 0) return false;
  const held = socketInodes(pid);
  return listening.some((inode) => inode !== undefined && held.has(inode));
}
