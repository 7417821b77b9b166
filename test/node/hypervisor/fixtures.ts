// A bare platform (hardware layer only) with a few domains, for IOMMU-level tests that do
// not need the hypervisor's roles: dom0 with its devices, a "mini-domain" and two VMs.
import { DOMID_HARDWARE, DOMID_IO, type DomainId } from '../../../src/node/hypervisor/domain-id.js';
import { type InvariantInput, assertInvariants } from '../../../src/node/hypervisor/invariants.js';
import { DomainMemory } from '../../../src/node/hypervisor/memory.js';
import { nodeTopology, parseBdf, sourceId, type SourceId } from '../../../src/node/hypervisor/pci.js';
import { Platform } from '../../../src/node/hypervisor/platform.js';
import { SecurityEventLog } from '../../../src/node/hypervisor/security-events.js';

export const SID = {
  storage: sourceId(parseBdf('00:02.0')),
  nic0: sourceId(parseBdf('00:03.0')),
  nic1: sourceId(parseBdf('00:03.1')),
  accel: sourceId(parseBdf('01:00.0')),
  accelAudio: sourceId(parseBdf('01:00.1')),
  auth: sourceId(parseBdf('00:1f.0')),
} as const;

export const MINI: DomainId = 1;
export const VM_A: DomainId = 2;
export const VM_B: DomainId = 3;

export interface BarePlatform {
  readonly platform: Platform;
  readonly events: SecurityEventLog;
  readonly memory: ReadonlyMap<DomainId, DomainMemory>;
  check(): void;
}

export function barePlatform(options: { faultThreshold?: number; pages?: number } = {}): BarePlatform {
  const events = new SecurityEventLog(10_000);
  const topology = nodeTopology('sim');
  const platform = new Platform({ topology, events, maxFrames: 4096, faultThreshold: options.faultThreshold ?? 1000, faultLogCapacity: 64 });
  const memory = new Map<DomainId, DomainMemory>();
  for (const d of [DOMID_HARDWARE, MINI, VM_A, VM_B]) {
    platform.iommu.createTable(d);
    memory.set(d, new DomainMemory(platform.memory, d, options.pages ?? 4));
  }
  for (const dev of topology.devices()) {
    if (dev.initialOwner === 'hardware-domain' && platform.ownerOf(dev.sid) === DOMID_IO) platform.assign(dev.sid, DOMID_HARDWARE, null);
  }
  const input = (): InvariantInput => ({
    platform: platform.snapshot(),
    devices: topology.devices(),
    domains: [
      { id: DOMID_HARDWARE, role: 'hardware', state: 'running' },
      { id: MINI, role: 'minidomain', state: 'running' },
      { id: VM_A, role: 'vm', state: 'running' },
      { id: VM_B, role: 'vm', state: 'running' },
    ],
  });
  return { platform, events, memory, check: () => assertInvariants(input()) };
}

export function hfnOf(bare: BarePlatform, domain: DomainId, gfn: number): number {
  const hfn = bare.memory.get(domain)?.hfn(gfn);
  if (hfn === undefined) throw new Error(`domain ${domain} has no gfn ${gfn}`);
  return hfn;
}

export type { SourceId };
