// The QEMU VM backend (DESIGN.md §3.5, docs/qemu-vms.md): real Linux guests. `runner` is
// the hypervisor's hook; each boot is a pipeline of named steps (the shared ones in
// ../backend-base.ts), and every resource a step took is given back if a later one fails:
//
//   setup    dom0's `guest` parsed strictly (GuestSetup)                MALFORMED_REQUEST
//   image    the measured command line is one line of text             MALFORMED_REQUEST
//   charge   declared memory (+ QEMU's own) against the capacity       CAPACITY_EXCEEDED
//   record   a private VM directory (0700) and its record (for reaping)
//   copies   the measured kernel and initramfs — the bytes in VM memory the hypervisor
//            hashed — written into that directory (0400, O_EXCL); QEMU gets exactly
//            these paths and the measured command line: nothing dom0 can reach is read
//   accel    KVM if it really boots a guest kernel here, else TCG (probed once per host
//            boot; a boot waits at most 2 s for an unfinished probe, then takes TCG)
//   port     a loopback port for `hostfwd` (reserved, probed; another if QEMU loses it) CAPACITY_EXCEEDED
//   spawn    QEMU, until it holds the port and the VM channel's socket is bridged    VM_BOOT_FAILED
//   config   hostname, authorized keys and port 22, on the channel at once: sshd starts
//            while the launch is attested; the guest renames the certificate into place
//            when it comes (no restart), and its `ready` reaches dom0 only with
//            `certificate-installed` (at most `certificateWaitMs`, ../certificate-gate.ts)
//
// The runner resolves once the guest starts (like `xl create`); `host-key`, `ready` and
// `certificate-installed` arrive on the channel afterwards. A QEMU that exits on its own
// (the guest powered off or panicked: `-no-reboot`, `panic=-1`) is cleaned up at once;
// the hypervisor then destroys its domain through `exited`.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { TrustlaunchError, isTrustlaunchError } from '../../../protocol/errors.js';
import type { DomainId, VmBoot } from '../../hypervisor/index.js';
import { configMessage, parseGuestSetup, type GuestSetup } from '../backend.js';
import { VmBackendBase, type BootContext, type Prepared, type RunningVm } from '../backend-base.js';
import { MemoryLedger } from '../memory-ledger.js';
import type { PortRange } from '../ports.js';
import { reapLeftovers, type ReapedVm } from '../reaper.js';
import { RuntimeDir, defaultRuntimeRoot, type VmDir, type VmRecord } from '../runtime-dir.js';
import { PROBE_WAIT_MS, chooseAccelerator, type AcceleratorChoice, type AcceleratorSetting } from './accelerator.js';
import { INITRD_FILE, KERNEL_FILE, qemuArgs, type QemuArgs } from './qemu-args.js';
import { QemuVm } from './qemu-vm.js';

const MiB = 1024 * 1024;

export interface QemuVmBackendOptions {
  /** Runtime directory (default: /run/trustlaunch/qemu-vms as root, else under the temp dir). */
  readonly runtimeRoot?: string;
  /** Loopback ports for `hostfwd` (default 20000..31999, below Linux's ephemeral range). */
  readonly ports?: PortRange;
  /** Memory the backend may hand out, QEMU's own included (default: 75 % of the machine's). */
  readonly capacityBytes?: number;
  /** `auto` (default): KVM when it really boots the guest kernel, else TCG. */
  readonly accelerator?: AcceleratorSetting;
  /** The QEMU binary (default: qemu-system-x86_64 on the PATH). */
  readonly qemuBinary?: string;
  /** Charged per VM on top of its memory, for QEMU itself (default 64 MiB). */
  readonly overheadBytes?: number;
  readonly vcpus?: number;
  /** Between SIGTERM and SIGKILL (default 3 s; QEMU exits at once on SIGTERM). */
  readonly stopGraceMs?: number;
  /** Console bytes kept per VM (default 64 KiB). */
  readonly consoleBytes?: number;
  /** How long QEMU may take to listen on its port (default 30 s). */
  readonly startTimeoutMs?: number;
  /** QEMU's seccomp sandbox (default on). */
  readonly sandbox?: boolean;
  /**
   * QEMU gets SIGKILL when the node process dies (`setpriv --pdeathsig`, default on when
   * util-linux's setpriv is installed). Off, a QEMU outlives a crashed node until the
   * restarted node's reaper kills it (tests of the reaper turn it off).
   */
  readonly parentDeathSignal?: boolean;
  /**
   * How long the guest's `ready` (sshd is up) waits for its `certificate-installed` before
   * dom0 hears of it (default 10 s; 0 when the node's attestation is off). The config goes
   * out at once either way; so a VM dom0 reports running presents its certificate, and a
   * user trusting only the CA's @cert-authority line is never refused by a VM that is
   * about to present it (../certificate-gate.ts).
   */
  readonly certificateWaitMs?: number;
}

/** Where a VM runs, for the node's status and for tests (no secrets). */
export interface QemuVmInspection {
  readonly vmId: DomainId;
  readonly name: string;
  readonly qemuPid: number;
  readonly marker: string;
  readonly sshPort: number;
  /** The VM's private directory (the measured copies, the channel socket). */
  readonly dir: string;
  readonly accelerator: AcceleratorChoice;
  /** QEMU's whole argument vector (as `/proc/PID/cmdline` shows it). */
  readonly argv: readonly string[];
  readonly memoryMiB: number;
}

interface RunningQemuVm extends RunningVm<QemuVm> {
  readonly memoryMiB: number;
  readonly accelerator: AcceleratorChoice;
}

interface QemuBoot extends Prepared {
  readonly setup: GuestSetup;
  readonly cmdline: string;
}

const PORT_ATTEMPTS = 5;
/** Below this the guest kernel cannot unpack an initramfs. */
export const MIN_VM_MEMORY_BYTES = 64 * MiB;
export const DEFAULT_OVERHEAD_BYTES = 64 * MiB;

/** A command's absolute path on the PATH, or undefined. */
function onPath(name: string): string | undefined {
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin').split(':')) {
    const p = join(dir, name);
    if (dir !== '' && existsSync(p)) return p;
  }
  return undefined;
}

export class QemuVmBackend extends VmBackendBase<QemuVm, RunningQemuVm, QemuBoot> {
  readonly kind = 'qemu' as const;
  readonly qemuBinary: string;
  readonly #setting: AcceleratorSetting;
  readonly #setpriv: string | undefined;
  readonly #o: Required<Pick<QemuVmBackendOptions, 'vcpus' | 'consoleBytes' | 'startTimeoutMs' | 'sandbox' | 'certificateWaitMs'>>;
  #lastChoice: AcceleratorChoice | undefined;

  private constructor(dir: RuntimeDir, reaped: ReapedVm[], qemu: string, options: QemuVmBackendOptions) {
    super(dir, reaped, {
      ports: options.ports,
      ledger: new MemoryLedger({ capacityBytes: options.capacityBytes ?? Math.floor(totalmem() * 0.75), minChargeBytes: 0 }),
      overheadBytes: options.overheadBytes ?? DEFAULT_OVERHEAD_BYTES,
      stopGraceMs: options.stopGraceMs ?? 3000,
      label: 'QEMU',
    });
    this.qemuBinary = qemu;
    this.#setting = options.accelerator ?? 'auto';
    this.#setpriv = options.parentDeathSignal === false ? undefined : onPath('setpriv');
    this.#o = {
      vcpus: options.vcpus ?? 1,
      consoleBytes: options.consoleBytes ?? 64 * 1024,
      startTimeoutMs: options.startTimeoutMs ?? 30_000,
      sandbox: options.sandbox ?? true,
      certificateWaitMs: options.certificateWaitMs ?? 10_000,
    };
  }

  /** Opens (creating) the runtime directory, reaps what dead node processes left, and returns the backend. UNAVAILABLE without QEMU. */
  static async open(options: QemuVmBackendOptions = {}): Promise<QemuVmBackend> {
    const qemu = onPath(options.qemuBinary ?? 'qemu-system-x86_64');
    if (qemu === undefined) throw new TrustlaunchError('UNAVAILABLE', `${options.qemuBinary ?? 'qemu-system-x86_64'} is not installed (apt-get install qemu-system-x86)`);
    const dir = RuntimeDir.open(options.runtimeRoot ?? defaultRuntimeRoot('qemu'));
    const reaped = await reapLeftovers(dir);
    return new QemuVmBackend(dir, reaped, qemu, options);
  }

  /** The accelerator setting, and what the last boot chose (undefined before the first boot). */
  accelerator(): { readonly setting: AcceleratorSetting; readonly chosen: AcceleratorChoice | undefined } {
    return { setting: this.#setting, chosen: this.#lastChoice };
  }

  /** Types on the VM's serial console (dom0's side of it: like `virsh console`). NOT_FOUND for other VMs. */
  consoleInput(vmId: DomainId, bytes: string | Uint8Array): void {
    const r = this.vms.get(vmId);
    if (r === undefined) throw new TrustlaunchError('NOT_FOUND', `no QEMU VM ${vmId}`);
    r.vm.consoleInput(bytes);
  }

  inspect(vmId: DomainId): QemuVmInspection | undefined {
    const r = this.vms.get(vmId);
    if (r === undefined) return undefined;
    return { vmId, name: r.name, qemuPid: r.vm.process.pid, marker: r.vm.marker, sshPort: r.port, dir: r.dir.path, accelerator: r.accelerator, argv: r.vm.argv, memoryMiB: r.memoryMiB };
  }

  // --- boot ----------------------------------------------------------------------------

  protected prepare(boot: VmBoot): QemuBoot {
    const setup = parseGuestSetup(boot.guest);
    const cmdline = commandLine(boot.cmdline?.bytes);
    const declaredBytes = boot.capability.memory.size;
    if (declaredBytes < MIN_VM_MEMORY_BYTES) throw new TrustlaunchError('MALFORMED_REQUEST', `a QEMU VM needs at least ${MIN_VM_MEMORY_BYTES / MiB} MiB of memory`);
    return { setup, cmdline, declaredBytes };
  }

  protected async start(boot: VmBoot, { setup, cmdline, declaredBytes }: QemuBoot, { record, dir, chargedBytes, undo }: BootContext): Promise<RunningQemuVm> {
    const memoryMiB = Math.ceil(declaredBytes / MiB);
    // The measured copies: the bytes the hypervisor hashed, read from VM memory.
    const kernelPath = join(dir.path, KERNEL_FILE);
    const initrdPath = boot.initrd === undefined ? undefined : join(dir.path, INITRD_FILE);
    await writeMeasuredCopy(kernelPath, boot.image);
    if (initrdPath !== undefined && boot.initrd !== undefined) await writeMeasuredCopy(initrdPath, boot.initrd.bytes);

    const accelerator = await chooseAccelerator(this.#setting, { qemu: this.qemuBinary, kernelPath, initrdPath }, PROBE_WAIT_MS);
    this.#lastChoice = accelerator;

    const { port, vm } = await this.#spawnOnFreePort(dir, record, { accel: accelerator.accel, memoryMiB, vcpus: this.#o.vcpus, kernelPath, initrdPath, cmdline, sandbox: this.#o.sandbox }, boot);
    undo(() => this.ports.release(port));
    undo(() => vm.stop(0));
    // At once: the guest reads it after sending its host key, and starts sshd meanwhile.
    boot.sendToGuest(configMessage(setup, 22));
    return { vmId: boot.capability.vmId, name: boot.name, declaredBytes, chargedBytes, memoryMiB, port, dir, accelerator, vm };
  }

  /** Allocates a port and starts QEMU on it; another port when QEMU lost the race for it. */
  async #spawnOnFreePort(dir: VmDir, record: VmRecord, args: Omit<QemuArgs, 'sshPort'>, boot: VmBoot): Promise<{ port: number; vm: QemuVm }> {
    let last: unknown;
    for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
      const port = await this.ports.allocate(dir);
      this.dir.writeRecord(dir, { ...record, sshPort: port });
      try {
        const vm = await QemuVm.spawn({
          qemu: this.qemuBinary,
          args: qemuArgs({ ...args, sshPort: port }),
          marker: record.marker,
          dir: dir.path,
          sshPort: port,
          channel: boot.capability.channel,
          consoleBytes: this.#o.consoleBytes,
          setpriv: this.#setpriv,
          startTimeoutMs: this.#o.startTimeoutMs,
          certificateWaitMs: this.#o.certificateWaitMs,
        });
        return { port, vm };
      } catch (e) {
        this.ports.release(port);
        if (!isTrustlaunchError(e, 'CONFLICT')) throw e;
        last = e;
      }
    }
    throw new TrustlaunchError('VM_BOOT_FAILED', `QEMU lost its forwarded port ${PORT_ATTEMPTS} times`, { cause: last });
  }
}

/** The measured command line as QEMU's `-append` argument: one line of text (its bytes are exactly what was hashed). */
function commandLine(bytes: Uint8Array | undefined): string {
  if (bytes === undefined) return '';
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'the kernel command line is not UTF-8');
  }
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(text)) throw new TrustlaunchError('MALFORMED_REQUEST', 'the kernel command line holds a control character (a newline, a NUL…)');
  return text;
}

/** Writes a measured part into a new file of the VM directory (never an existing one), read-only. */
async function writeMeasuredCopy(path: string, bytes: Uint8Array): Promise<void> {
  await writeFile(path, bytes, { mode: 0o400, flag: 'wx' });
}

/** Opens the QEMU VM backend (reaping leftovers of dead node processes first). */
export function openQemuVmBackend(options: QemuVmBackendOptions = {}): Promise<QemuVmBackend> {
  return QemuVmBackend.open(options);
}
