// The process VM backend (DESIGN.md §3.5, docs/process-vms.md): the default, needing only
// Node.js and OpenSSH. `runner` is the hypervisor's hook; each boot is a pipeline of named
// steps (the shared ones in ../backend-base.ts), and every resource a step took is given
// back if a later one fails:
//
//   setup    one program (no bundle); dom0's `guest` parsed      UNSUPPORTED, MALFORMED_REQUEST
//   charge   declared memory against the capacity               CAPACITY_EXCEEDED
//   record   a private VM directory and its record (for reaping)
//   port     an SSH port on 127.0.0.1 (reserved, probed)         CAPACITY_EXCEEDED
//   spawn    the measured bytes into `node -`, fd 3 bridged       VM_BOOT_FAILED
//   config   hostname, authorized keys and port, on the channel
//
// The runner resolves once the guest runs (like `xl create`); the guest's `host-key` and
// `ready` arrive on the channel afterwards. A guest that exits on its own is cleaned up
// at once; the hypervisor then destroys its domain through `exited`.
import { totalmem } from 'node:os';
import { TrustlaunchError } from '../../../protocol/errors.js';
import type { DomainId, VmBoot } from '../../hypervisor/index.js';
import { configMessage, parseGuestSetup, type GuestSetup } from '../backend.js';
import { VmBackendBase, type BootContext, type Prepared, type RunningVm } from '../backend-base.js';
import { MemoryLedger } from '../memory-ledger.js';
import type { PortRange } from '../ports.js';
import { reapLeftovers } from '../reaper.js';
import { RuntimeDir } from '../runtime-dir.js';
import { ProcessVm } from './process-vm.js';

export interface ProcessVmBackendOptions {
  /** Runtime directory (default: /run/trustlaunch/process-vms as root, else under the temp dir). */
  readonly runtimeRoot?: string;
  /** SSH ports handed out (default 20000..31999, below Linux's ephemeral range). */
  readonly ports?: PortRange;
  /** Memory the backend may hand out (default: 75 % of the machine's). */
  readonly capacityBytes?: number;
  /** Each VM is charged at least this (default 64 MiB). */
  readonly minChargeBytes?: number;
  /** The Node.js that runs guests (default: this one, process.execPath). */
  readonly nodeExecutable?: string;
  /** Between SIGTERM and SIGKILL (default 3 s). */
  readonly stopGraceMs?: number;
  /** Console bytes kept per VM (default 64 KiB). */
  readonly consoleBytes?: number;
  /**
   * How long the guest's `ready` waits for its host certificate before dom0 hears of it
   * (../certificate-gate.ts; default 0: at once).
   */
  readonly certificateWaitMs?: number;
}

/** Where a VM's processes are, for the node's status and for tests (no secrets). */
export interface ProcessVmInspection {
  readonly vmId: DomainId;
  readonly name: string;
  readonly guestPid: number;
  readonly marker: string;
  readonly sshPort: number;
  /** The VM's private runtime directory (the guest's TMPDIR is `tmp/` below it). */
  readonly dir: string;
}

interface ProcessBoot extends Prepared {
  readonly setup: GuestSetup;
}

export class ProcessVmBackend extends VmBackendBase<ProcessVm, RunningVm<ProcessVm>, ProcessBoot> {
  readonly kind = 'process' as const;
  readonly #nodeExecutable: string;
  readonly #consoleBytes: number;
  readonly #certificateWaitMs: number;

  private constructor(dir: RuntimeDir, reaped: Awaited<ReturnType<typeof reapLeftovers>>, options: ProcessVmBackendOptions) {
    super(dir, reaped, {
      ports: options.ports,
      ledger: new MemoryLedger({
        capacityBytes: options.capacityBytes ?? Math.floor(totalmem() * 0.75),
        ...(options.minChargeBytes === undefined ? {} : { minChargeBytes: options.minChargeBytes }),
      }),
      overheadBytes: 0,
      stopGraceMs: options.stopGraceMs ?? 3000,
      label: 'process',
    });
    this.#nodeExecutable = options.nodeExecutable ?? process.execPath;
    this.#consoleBytes = options.consoleBytes ?? 64 * 1024;
    this.#certificateWaitMs = options.certificateWaitMs ?? 0;
  }

  /** Opens (creating) the runtime directory, reaps what dead node processes left, and returns the backend. */
  static async open(options: ProcessVmBackendOptions = {}): Promise<ProcessVmBackend> {
    const dir = RuntimeDir.open(options.runtimeRoot);
    const reaped = await reapLeftovers(dir);
    return new ProcessVmBackend(dir, reaped, options);
  }

  inspect(vmId: DomainId): ProcessVmInspection | undefined {
    const r = this.vms.get(vmId);
    if (r === undefined) return undefined;
    return { vmId, name: r.name, guestPid: r.vm.process.pid, marker: r.vm.marker, sshPort: r.port, dir: r.dir.path };
  }

  protected prepare(boot: VmBoot): ProcessBoot {
    if (boot.initrd !== undefined || boot.cmdline !== undefined) {
      throw new TrustlaunchError('UNSUPPORTED', 'the process backend runs one guest program; a kernel bundle (initrd, cmdline) needs the qemu backend');
    }
    return { setup: parseGuestSetup(boot.guest), declaredBytes: boot.capability.memory.size };
  }

  protected async start(boot: VmBoot, { setup, declaredBytes }: ProcessBoot, { record, dir, chargedBytes, undo }: BootContext): Promise<RunningVm<ProcessVm>> {
    const port = await this.ports.allocate(dir);
    undo(() => this.ports.release(port));
    this.dir.writeRecord(dir, { ...record, sshPort: port });
    const vm = await ProcessVm.spawn({ boot, marker: record.marker, dir: dir.path, tmp: dir.tmp, nodeExecutable: this.#nodeExecutable, consoleBytes: this.#consoleBytes, certificateWaitMs: this.#certificateWaitMs });
    undo(() => vm.stop(0));
    boot.sendToGuest(configMessage(setup, port));
    return { vmId: boot.capability.vmId, name: boot.name, declaredBytes, chargedBytes, port, dir, vm };
  }
}

/** Opens the process VM backend (reaping leftovers of dead node processes first). */
export function openProcessVmBackend(options: ProcessVmBackendOptions = {}): Promise<ProcessVmBackend> {
  return ProcessVmBackend.open(options);
}
