// The isolation invariants of DESIGN.md §3.1, checked over plain snapshot data. The
// model's operations are written to keep them; this check is the independent oracle the
// tests run after every step. A violation is a bug in the model (the TCB), never a
// refusal of a request, so it is an InvariantViolation, not a TrustlaunchError.
import { DOMID_IO, DOMID_XEN, type DomainId, type DomainRole, type DomainState } from './domain-id.js';
import { DOMAIN_AW } from './iommu.js';
import type { PciDevice, SourceId } from './pci.js';
import { formatSourceId } from './pci.js';
import type { PlatformSnapshot } from './platform.js';
import { PAGE_SIZE, TRANSLATION_TYPE } from './vtd/structures.js';

export type InvariantName =
  | 'ONE_OWNER'
  | 'GROUP_MOVES_TOGETHER'
  | 'QUARANTINE_BLOCKS_DMA'
  | 'CONTEXT_MATCHES_OWNER'
  | 'ROOT_MATCHES_CONTEXT'
  | 'TABLES_OF_LIVE_DOMAINS'
  | 'PAGE_TABLES_PRIVATE'
  | 'MINIDOMAIN_PAGES_PRIVATE'
  | 'MMIO_GRANT_FOLLOWS_OWNER'
  | 'AUTH_DEVICE_EXCLUSIVE';

export class InvariantViolation extends Error {
  readonly invariant: InvariantName;

  constructor(invariant: InvariantName, message: string) {
    super(`${invariant}: ${message}`);
    this.name = 'InvariantViolation';
    this.invariant = invariant;
  }
}

export interface DomainView {
  readonly id: DomainId;
  readonly role: DomainRole;
  readonly state: DomainState;
}

export interface InvariantInput {
  readonly platform: PlatformSnapshot;
  readonly devices: readonly PciDevice[];
  readonly domains: readonly DomainView[];
  /** The auth device; absent when checking a bare platform without the hypervisor's roles. */
  readonly authSid?: SourceId;
}

function check(ok: boolean, invariant: InvariantName, message: () => string): void {
  if (!ok) throw new InvariantViolation(invariant, message());
}

export function assertInvariants(input: InvariantInput): void {
  const { platform, devices, domains, authSid } = input;
  const { iommu } = platform;
  const live = new Map(domains.filter((d) => d.state !== 'destroyed').map((d) => [d.id, d]));
  const owners = new Map(iommu.owners);
  const tableOf = new Map(iommu.tableOf);
  const frameOwner = new Map(platform.frames.map(([hfn, owner]) => [hfn, owner]));
  const ctxBySid = new Map<SourceId, (typeof iommu.contextTables)[number][1][number][1]>();
  const ctpOfBus = new Map<number, number>();
  iommu.root.forEach((r, bus) => {
    if (r !== null) ctpOfBus.set(r.ctp, bus);
  });
  for (const [ctp, entries] of iommu.contextTables) {
    const bus = ctpOfBus.get(ctp);
    check(bus !== undefined, 'ROOT_MATCHES_CONTEXT', () => `context table ${ctp} is not referenced by any root entry`);
    for (const [fn, e] of entries) if (e.present) ctxBySid.set(((bus as number) << 8) | fn, e);
  }

  // Each requester id has exactly one owner: a live domain or quarantine.
  check(owners.size === devices.length && iommu.owners.length === devices.length, 'ONE_OWNER', () => `${iommu.owners.length} owner entries for ${devices.length} devices`);
  for (const d of devices) {
    const o = owners.get(d.sid);
    check(o !== undefined, 'ONE_OWNER', () => `${formatSourceId(d.sid)} has no owner`);
    check(o === DOMID_IO || live.has(o as DomainId), 'ONE_OWNER', () => `${formatSourceId(d.sid)} is owned by ${o}, not a live domain`);
  }

  // A whole IOMMU group has one owner.
  const groupOwner = new Map<string, DomainId>();
  for (const d of devices) {
    const o = owners.get(d.sid) as DomainId;
    const g = groupOwner.get(d.group);
    check(g === undefined || g === o, 'GROUP_MOVES_TOGETHER', () => `group ${d.group} is split between ${g} and ${o}`);
    groupOwner.set(d.group, o);
  }

  // Quarantined devices have no context entry (DMA faults) and no MMIO grant; owned ones
  // have a present, valid context entry for exactly their owner's table.
  const grants = new Map(platform.mmio.grants);
  for (const sid of ctxBySid.keys()) check(owners.has(sid), 'CONTEXT_MATCHES_OWNER', () => `context entry for unknown requester ${formatSourceId(sid)}`);
  for (const d of devices) {
    const o = owners.get(d.sid) as DomainId;
    const ce = ctxBySid.get(d.sid);
    if (o === DOMID_IO) {
      check(ce === undefined, 'QUARANTINE_BLOCKS_DMA', () => `quarantined ${formatSourceId(d.sid)} has a present context entry`);
      check(!grants.has(d.sid), 'QUARANTINE_BLOCKS_DMA', () => `quarantined ${formatSourceId(d.sid)} has an MMIO grant`);
      continue;
    }
    check(
      ce !== undefined && ce.did === o && ce.slptptr === tableOf.get(o) && !ce.fpd && ce.tt === TRANSLATION_TYPE.UNTRANSLATED_ONLY && ce.aw === DOMAIN_AW,
      'CONTEXT_MATCHES_OWNER',
      () => `${formatSourceId(d.sid)} owned by ${o} has context entry ${JSON.stringify(ce)}`,
    );
  }

  // Root entry present exactly for buses with a present context entry.
  const busesInUse = new Set([...ctxBySid.keys()].map((sid) => sid >> 8));
  iommu.root.forEach((r, bus) => {
    check((r !== null) === busesInUse.has(bus), 'ROOT_MATCHES_CONTEXT', () => `root entry of bus ${bus} is ${r === null ? 'absent' : 'present'}`);
  });

  // Every live domain has a table, only live domains do, and tables live in hypervisor frames.
  check(tableOf.size === live.size && [...live.keys()].every((id) => tableOf.has(id)), 'TABLES_OF_LIVE_DOMAINS', () => `tables for ${[...tableOf.keys()].join(',')}, live ${[...live.keys()].join(',')}`);
  for (const [, ptr] of tableOf) check(frameOwner.get(ptr / PAGE_SIZE) === DOMID_XEN, 'TABLES_OF_LIVE_DOMAINS', () => `page table ${ptr} is not in a hypervisor frame`);

  // Page tables map only their own domain's frames; in particular no mini-domain page elsewhere.
  const domainOfTable = new Map([...tableOf].map(([d, p]) => [p, d]));
  const miniIds = new Set(domains.filter((d) => d.role === 'minidomain').map((d) => d.id));
  for (const [ptr, ptes] of iommu.pageTables) {
    const d = domainOfTable.get(ptr);
    check(d !== undefined, 'TABLES_OF_LIVE_DOMAINS', () => `page table ${ptr} belongs to no domain`);
    for (const [pfn, pte] of ptes) {
      const fo = frameOwner.get(pte.addr / PAGE_SIZE);
      check(!(miniIds.has(fo as DomainId) && fo !== d), 'MINIDOMAIN_PAGES_PRIVATE', () => `domain ${d} maps IOVA page ${pfn} to a frame of mini-domain ${fo}`);
      check(fo === d, 'PAGE_TABLES_PRIVATE', () => `domain ${d} maps IOVA page ${pfn} to frame ${pte.addr / PAGE_SIZE} owned by ${fo}`);
    }
  }

  // MMIO grants follow ownership.
  for (const [sid, holder] of grants) check(owners.get(sid) === holder, 'MMIO_GRANT_FOLLOWS_OWNER', () => `${formatSourceId(sid)} granted to ${holder}, owned by ${owners.get(sid)}`);

  // The auth device: quarantined, or owned and granted to a running mini-domain only.
  if (authSid === undefined) return;
  const authOwner = owners.get(authSid) as DomainId;
  if (authOwner !== DOMID_IO) {
    const d = live.get(authOwner);
    check(d?.role === 'minidomain' && d.state === 'running', 'AUTH_DEVICE_EXCLUSIVE', () => `auth device owned by domain ${authOwner} (${d?.role ?? 'none'}, ${d?.state ?? 'none'})`);
  }
  const authGrant = grants.get(authSid);
  check(authGrant === undefined || authGrant === authOwner, 'AUTH_DEVICE_EXCLUSIVE', () => `auth device MMIO granted to ${authGrant}`);
}
