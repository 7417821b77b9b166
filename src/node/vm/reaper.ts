// Reaping what a dead node process left behind, for every backend sharing the runtime
// root. A process guest notices its channel closing and stops by itself; a QEMU VM gets
// SIGKILL when its node dies (parent-death signal). This catches the rest (a guest that
// was frozen, hung or killed without its sshd, a QEMU that outlived its node, a node
// killed between spawning and recording): every VM record under the runtime root whose
// owner (pid + start time) no longer runs is swept by its marker, guest pid and
// directory, its port reservation released and its directory (with any key or measured
// image copy) removed.
import { isRunning, sweep } from './proc.js';
import type { RuntimeDir } from './runtime-dir.js';

/** A directory without a record is a VM being created; after this long, a leftover. */
const UNRECORDED_GRACE_MS = 60_000;

export interface ReapedVm {
  readonly dir: string;
  readonly vmId: number | null;
  readonly name: string | null;
  /** Processes that were killed. */
  readonly killed: number;
  /** Processes that could not be killed within the bound (the directory is then kept). */
  readonly survivors: number;
}

export async function reapLeftovers(dir: RuntimeDir): Promise<ReapedVm[]> {
  const reaped: ReapedVm[] = [];
  for (const { dir: vm, record, ageMs } of dir.list()) {
    if (record === undefined) {
      if (ageMs < UNRECORDED_GRACE_MS) continue;
      dir.removeVm(vm);
      reaped.push({ dir: vm.name, vmId: null, name: null, killed: 0, survivors: 0 });
      continue;
    }
    if (isRunning(record.owner.pid, record.owner.startTime)) continue; // a live node's VM
    const result = await sweep({ marker: record.marker, root: record.guest ?? undefined, dir: vm.path });
    if (result.survivors.length === 0) {
      if (record.sshPort !== null) dir.releasePort(record.sshPort);
      dir.removeVm(vm);
    }
    reaped.push({ dir: vm.name, vmId: record.vmId, name: record.name, killed: result.killed.length, survivors: result.survivors.length });
  }
  for (const port of dir.orphanedPorts()) dir.releasePort(port);
  return reaped;
}
