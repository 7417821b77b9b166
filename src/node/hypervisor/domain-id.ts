// Domain identifiers, roles and lifecycle states. Ids follow Xen's conventions: 0 is
// the hardware domain (dom0); the reserved ids from 0x7FF0 name pseudo-domains, among
// them DOMID_IO, the owner of quarantined devices (Xen's `dom_io`), and DOMID_XEN, the
// owner of the hypervisor's own frames. A VT-d context entry's DID is the domain id.

export type DomainId = number;

export const DOMID_HARDWARE: DomainId = 0;
/** First reserved id; real domains are numbered below it. */
export const DOMID_FIRST_RESERVED: DomainId = 0x7ff0;
/** Quarantine: owns every device that no domain owns; its devices have no context entry. */
export const DOMID_IO: DomainId = 0x7ff1;
/** The hypervisor itself: owns the frames of the remapping structures. */
export const DOMID_XEN: DomainId = 0x7ff2;

export type DomainRole = 'hardware' | 'minidomain' | 'vm';
export type DomainState = 'building' | 'running' | 'destroyed';

export function isReservedDomainId(id: DomainId): boolean {
  return id >= DOMID_FIRST_RESERVED;
}
