// A VM backend's runtime directory (process and QEMU backends alike): what a restarted
// node needs to reap the VMs of a node process that died (docs/process-vms.md,
// docs/qemu-vms.md). Private to the backend, i.e. the hypervisor's side (0700, owned by
// the node's user; anything else is FILE_INSECURE). Several node processes may share one
// root: each record names its owner (pid + start time), and a reaper only touches records
// whose owner no longer runs.
//
//   <root>/vms/<vm-dir>/record.json   VmRecord, replaced atomically (write + rename)
//   <root>/vms/<vm-dir>/tmp/          a process guest's TMPDIR (its host key lives below it)
//   <root>/vms/<vm-dir>/…             a QEMU VM's measured kernel and initramfs, its channel socket
//   <root>/ports/<port>               a port reservation (O_EXCL), naming its <vm-dir>
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { TrustlaunchError } from '../../protocol/errors.js';
import { IdSchema } from '../../protocol/messages.js';

const ProcessRefSchema = z.strictObject({
  pid: z.number().int().positive(),
  startTime: z.string().regex(/^[0-9]{1,20}$/),
});
export type ProcessRef = z.infer<typeof ProcessRefSchema>;

export const VmRecordSchema = z.strictObject({
  v: z.literal(1),
  vmId: z.number().int().nonnegative(),
  name: IdSchema,
  /** The value of TRUSTLAUNCH_VM_MARKER in every process of this VM (QEMU's too). */
  marker: z.string().regex(/^[0-9a-f]{32}$/),
  /** The node process that runs the VM. */
  owner: ProcessRefSchema,
  /** The guest process (a QEMU VM: the QEMU process), once spawned. */
  guest: ProcessRefSchema.nullable(),
  sshPort: z.number().int().min(1).max(65535).nullable(),
  createdAt: z.string().max(40),
});
export type VmRecord = z.infer<typeof VmRecordSchema>;

const MAX_RECORD_BYTES = 4096;
const VM_DIR_NAME = /^[0-9]{1,10}-[a-z0-9-]{1,63}-[0-9a-f]{12}$/;

export interface VmDir {
  readonly name: string;
  readonly path: string;
  /** The guest's TMPDIR. */
  readonly tmp: string;
}

export interface StoredVm {
  readonly dir: VmDir;
  /** Undefined when the record is missing or not a VmRecord. */
  readonly record: VmRecord | undefined;
  readonly ageMs: number;
}

/** Where trustlaunch keeps per-boot state of this user: /run/trustlaunch as root, else a directory in the temp dir. */
export function runtimeBase(): string {
  const uid = process.getuid?.() ?? 0;
  return uid === 0 ? '/run/trustlaunch' : join(tmpdir(), `trustlaunch-${uid}`);
}

/** Where a backend keeps its state unless told otherwise: /run when we may, else the temp dir. */
export function defaultRuntimeRoot(kind: 'process' | 'qemu' = 'process'): string {
  return join(runtimeBase(), `${kind}-vms`);
}

/** Creates `path` (0700) if needed; FILE_INSECURE unless it is a directory of ours that nobody else may enter. */
export function ensurePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const s = lstatSync(path);
  const uid = process.getuid?.();
  if (!s.isDirectory() || (uid !== undefined && s.uid !== uid) || (s.mode & 0o077) !== 0) {
    throw new TrustlaunchError('FILE_INSECURE', `${path} must be a directory owned by this user with mode 0700`);
  }
}

export class RuntimeDir {
  readonly root: string;
  readonly #vms: string;
  readonly #ports: string;

  private constructor(root: string) {
    this.root = root;
    this.#vms = join(root, 'vms');
    this.#ports = join(root, 'ports');
  }

  static open(root: string = defaultRuntimeRoot()): RuntimeDir {
    const dir = new RuntimeDir(root);
    ensurePrivateDir(root);
    ensurePrivateDir(dir.#vms);
    ensurePrivateDir(dir.#ports);
    return dir;
  }

  /** A new VM directory with its first record (written before any process exists). */
  createVm(record: VmRecord): VmDir {
    const name = `${record.vmId}-${record.name}-${randomBytes(6).toString('hex')}`;
    const path = join(this.#vms, name);
    mkdirSync(path, { mode: 0o700 });
    const vm: VmDir = { name, path, tmp: join(path, 'tmp') };
    this.writeRecord(vm, record);
    mkdirSync(vm.tmp, { mode: 0o700 });
    return vm;
  }

  writeRecord(vm: VmDir, record: VmRecord): void {
    const bytes = JSON.stringify(VmRecordSchema.parse(record));
    const next = join(vm.path, 'record.json.new');
    writeFileSync(next, bytes, { mode: 0o600 });
    renameSync(next, join(vm.path, 'record.json'));
  }

  removeVm(vm: VmDir): void {
    rmSync(vm.path, { recursive: true, force: true });
  }

  /** Every VM directory, with its record when it parses. */
  list(): StoredVm[] {
    const out: StoredVm[] = [];
    for (const name of readdirSync(this.#vms)) {
      if (!VM_DIR_NAME.test(name)) continue;
      const path = join(this.#vms, name);
      let ageMs = 0;
      try {
        ageMs = Date.now() - statSync(path).mtimeMs;
      } catch {
        continue; // removed meanwhile
      }
      out.push({ dir: { name, path, tmp: join(path, 'tmp') }, record: readRecord(path), ageMs });
    }
    return out;
  }

  /** Takes `port` for `vm` unless another VM under this root holds it. */
  reservePort(port: number, vm: VmDir): boolean {
    let fd: number;
    try {
      fd = openSync(join(this.#ports, String(port)), 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
    try {
      writeSync(fd, vm.name);
    } finally {
      closeSync(fd);
    }
    return true;
  }

  releasePort(port: number): void {
    rmSync(join(this.#ports, String(port)), { force: true });
  }

  /** Port reservations whose VM directory is gone (left by a node that died). */
  orphanedPorts(): number[] {
    const live = new Set(readdirSync(this.#vms));
    const out: number[] = [];
    for (const name of readdirSync(this.#ports)) {
      if (!/^[0-9]{1,5}$/.test(name)) continue;
      let owner = '';
      try {
        owner = readFileSync(join(this.#ports, name), 'utf8');
      } catch {
        continue;
      }
      if (!live.has(owner)) out.push(Number(name));
    }
    return out;
  }
}

function readRecord(path: string): VmRecord | undefined {
  try {
    const file = join(path, 'record.json');
    if (statSync(file).size > MAX_RECORD_BYTES) return undefined;
    const parsed = VmRecordSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
