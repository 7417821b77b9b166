// One process-VM launch as dom0 performs it — capacity check, build (copy + hash), start,
// then wait for the guest's `host-key` and `ready` — with the time of each step. For
// benchmarks and tests; attestation (the mini-domain's part) is not included.
import type { Dom0Capability, VmInfo } from '../../hypervisor/index.js';
import type { GuestSetup, VmEndpoint } from '../backend.js';
import type { ProcessVmBackend } from './backend.js';

export interface LaunchProcessVmRequest {
  readonly name: string;
  readonly image: Uint8Array;
  readonly setup: GuestSetup;
  readonly memoryBytes?: number;
  /** Wait until `ready` (default) or only until `host-key`. */
  readonly until?: 'host-key' | 'ready';
  readonly timeoutMs?: number;
}

export interface ProcessVmLaunch {
  readonly info: VmInfo;
  readonly endpoint: VmEndpoint;
  /** Milliseconds since the call, at the end of each step. */
  readonly timings: {
    readonly built: number;
    readonly started: number;
    readonly hostKey: number;
    readonly ready: number | undefined;
  };
}

/** Builds, starts and waits for a process VM; on any failure the VM is destroyed and the error rethrown. */
export async function launchProcessVm(dom0: Dom0Capability, backend: ProcessVmBackend, req: LaunchProcessVmRequest): Promise<ProcessVmLaunch> {
  const t0 = performance.now();
  const timeoutMs = req.timeoutMs ?? 30_000;
  backend.admit(req.memoryBytes ?? 0);
  const built = await dom0.buildVm({ name: req.name, image: req.image, guest: req.setup, ...(req.memoryBytes === undefined ? {} : { memoryBytes: req.memoryBytes }) });
  const tBuilt = performance.now() - t0;
  try {
    await dom0.startVm(built.vmId);
    const tStarted = performance.now() - t0;
    const spawnedAt = backend.timeline(built.vmId)?.spawnedAt ?? t0;
    const sinceCall = (msAfterSpawn: number): number => spawnedAt - t0 + msAfterSpawn;
    const hostKey = sinceCall(await backend.waitForGuest(built.vmId, 'host-key', timeoutMs));
    const ready = (req.until ?? 'ready') === 'ready' ? sinceCall(await backend.waitForGuest(built.vmId, 'ready', timeoutMs)) : undefined;
    const endpoint = backend.endpoint(built.vmId);
    if (endpoint === undefined) throw new Error(`VM ${built.vmId} has no endpoint`);
    return { info: dom0.vm(built.vmId), endpoint, timings: { built: tBuilt, started: tStarted, hostKey, ready } };
  } catch (e) {
    await dom0.destroyVm(built.vmId).catch(() => undefined);
    throw e;
  }
}
