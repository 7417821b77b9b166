// What every VM backend (process, qemu) offers the node, beyond the hypervisor's hook
// (`VmRunner`, docs/hypervisor.md): the guest setup dom0 passes through `buildVm`'s opaque
// `guest` (untrusted, parsed strictly here), the `config` message built from it, and the
// node-facing view of the backend — each VM's SSH endpoint, its console, memory capacity
// and usage. The trusted node process holds the backend; it gives `runner` to the
// hypervisor and the rest (never a channel, never a host key) to dom0.
import { z } from 'zod';
import type { DomainId, VmChannelMessage, VmRunner } from '../hypervisor/index.js';
import { HostnameSchema, SshPublicKeySchema, parseMessage } from '../../protocol/messages.js';

/** At most this many authorized keys per VM (the guests enforce the same bound). */
export const MAX_AUTHORIZED_KEYS = 16;

/** dom0's `buildVm({guest})` for the process and QEMU backends: who may log in, under which name. */
export const GuestSetupSchema = z.strictObject({
  /** The VM's host name (the CA's certificate principal). */
  hostname: HostnameSchema,
  /** OpenSSH public key lines installed as the login user's authorized_keys. */
  authorizedKeys: z.array(SshPublicKeySchema).min(1).max(MAX_AUTHORIZED_KEYS),
});
export type GuestSetup = z.infer<typeof GuestSetupSchema>;

/** Parses dom0's opaque `guest` value; MALFORMED_REQUEST unless it is exactly a GuestSetup. */
export function parseGuestSetup(guest: unknown): GuestSetup {
  return parseMessage(GuestSetupSchema, guest);
}

/** The hypervisor → guest `config` message (docs/vm-channel.md). */
export function configMessage(setup: GuestSetup, sshPort: number): VmChannelMessage {
  if (!Number.isInteger(sshPort) || sshPort < 1 || sshPort > 65535) throw new RangeError('sshPort must be a TCP port');
  return { v: 1, type: 'config', hostname: setup.hostname, authorizedKeys: [...setup.authorizedKeys], sshPort };
}

/** Where a VM's sshd is reached from the node (loopback only). */
export interface VmEndpoint {
  readonly vmId: DomainId;
  readonly name: string;
  readonly host: '127.0.0.1';
  readonly sshPort: number;
}

export interface VmUsage {
  readonly vmId: DomainId;
  readonly name: string;
  /** Memory the VM declared (the hypervisor's `memoryBytes`). */
  readonly declaredBytes: number;
  /** What the backend charges against its capacity (at least its per-VM floor). */
  readonly chargedBytes: number;
  /** Resident memory of the VM's processes right now (process backend: guest + sshd + sessions). */
  readonly residentBytes: number;
}

export interface VmCapacity {
  readonly capacityBytes: number;
  readonly chargedBytes: number;
  readonly availableBytes: number;
  readonly vms: number;
}

/** The node-facing side of a VM backend. */
export interface VmBackend {
  readonly kind: 'process' | 'qemu';
  /** The hypervisor's hook: give it to `bootHypervisor({vmRunner})`. */
  readonly runner: VmRunner;
  /** Throws CAPACITY_EXCEEDED when a VM declaring `memoryBytes` would not fit now. */
  admit(memoryBytes: number): void;
  capacity(): VmCapacity;
  usage(): readonly VmUsage[];
  /** The VM's SSH endpoint once its port is allocated (before the guest is ready). */
  endpoint(vmId: DomainId): VmEndpoint | undefined;
  /** The VM's console (what dom0 may read; never a key). */
  console(vmId: DomainId): string | undefined;
  /** Stops every VM it runs; nothing is left behind. */
  close(): Promise<void>;
}
