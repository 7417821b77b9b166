// One process VM: the measured image bytes written into `node --input-type=module -`
// (never a file: nothing dom0 could swap after measurement), with a clean environment (no
// NODE_OPTIONS: nothing but the image runs), stdout/stderr into its console, and fd 3 — a
// socketpair end only this process holds — bridged to the VM channel. The process, its
// console, channel, timeline and stopping are the shared VmProcess (../vm-process.ts).
import type { ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';
import type { VmBoot } from '../../hypervisor/index.js';
import type { ProcessRef } from '../runtime-dir.js';
import { VmProcess, spawnVmProcess, type VmExit } from '../vm-process.js';

export type { GuestEvent, Timeline } from '../timeline.js';
export type GuestExit = VmExit;

export interface ProcessVmSpawn {
  readonly boot: VmBoot;
  readonly marker: string;
  /** The VM's private runtime directory. */
  readonly dir: string;
  /** The guest's TMPDIR and working directory (inside `dir`). */
  readonly tmp: string;
  readonly nodeExecutable: string;
  readonly consoleBytes: number;
  readonly certificateWaitMs: number;
}

export class ProcessVm extends VmProcess {
  private constructor(child: ChildProcess, ref: ProcessRef, o: ProcessVmSpawn) {
    super(child, ref, o);
  }

  /** Spawns the guest and hands it the image on stdin. VM_BOOT_FAILED if it cannot start. */
  static async spawn(o: ProcessVmSpawn): Promise<ProcessVm> {
    const { child, ref } = await spawnVmProcess({
      argv: [o.nodeExecutable, '--input-type=module', '-'],
      marker: o.marker,
      dir: o.dir,
      cwd: o.tmp,
      env: { TMPDIR: o.tmp },
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      consoleBytes: o.consoleBytes,
      what: 'the guest process',
    });
    const vm = new ProcessVm(child, ref, o);
    child.stderr?.on('data', (d: Buffer) => vm.console.append(d));
    vm.bridge(child.stdio[3] as Duplex, o.boot.capability.channel);
    // The measured bytes, exactly: a copy the hypervisor read back from VM memory.
    child.stdin?.on('error', () => undefined); // a guest that exits early closes its stdin
    child.stdin?.end(Buffer.from(o.boot.image.buffer, o.boot.image.byteOffset, o.boot.image.byteLength));
    return vm;
  }
}
