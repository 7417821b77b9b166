// What the manager's API answers with: the records as JSON, with their schemas (for
// response validation and the OpenAPI document). Times are ISO 8601 strings. Secrets
// (tokens, dom0 credentials) never appear in a view.
import { z } from 'zod';
import type { Image } from '../images/catalog.js';
import type { NodeState } from '../nodes.js';
import { VM_BACKENDS } from '../scheduler.js';
import type { User } from '../users.js';
import type { VmEvent, VmRecord } from '../vms.js';

const Time = z.string();
const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

export const UserViewSchema = z.strictObject({ name: z.string(), role: z.enum(['admin', 'user']), createdAt: Time });
export type UserView = z.infer<typeof UserViewSchema>;
export const userView = (u: User): UserView => ({ name: u.name, role: u.role, createdAt: iso(u.createdAt) });

const PartSchema = z.strictObject({ role: z.string(), digest: z.string(), size: z.number() });
export const ImageViewSchema = z.strictObject({
  name: z.string(),
  digest: z.string(),
  kind: z.enum(['raw', 'bundle']),
  size: z.number(),
  parts: z.array(PartSchema),
  createdAt: Time,
  createdBy: z.string(),
});
export type ImageView = z.infer<typeof ImageViewSchema>;
export const imageView = (i: Image): ImageView => ({
  name: i.name,
  digest: i.digest,
  kind: i.kind,
  size: i.size,
  parts: i.parts.map((p) => ({ role: p.role, digest: p.digest, size: p.size })),
  createdAt: iso(i.createdAt),
  createdBy: i.createdBy,
});

export const NodeViewSchema = z.strictObject({
  id: z.string(),
  endpoint: z.string(),
  status: z.enum(['joining', 'up', 'down']),
  memoryTotalMiB: z.number(),
  memoryUsedMiB: z.number(),
  vmCount: z.number(),
  maxVms: z.number(),
  health: z.string().nullable(),
  deviceKind: z.string().nullable(),
  /** The VM backend the node reported in its latest answered poll (null before one): which images it can run. */
  vmBackend: z.enum(VM_BACKENDS).nullable(),
  joinedAt: Time,
  lastSeenAt: Time.nullable(),
  lastError: z.string().nullable(),
  failures: z.number(),
});
export type NodeView = z.infer<typeof NodeViewSchema>;
export const nodeView = (n: NodeState): NodeView => ({
  id: n.id,
  endpoint: n.endpoint,
  status: n.status,
  memoryTotalMiB: n.memoryTotalMiB,
  memoryUsedMiB: n.memoryUsedMiB,
  vmCount: n.vmCount,
  maxVms: n.maxVms,
  health: n.health,
  deviceKind: n.deviceKind,
  vmBackend: n.vmBackend,
  joinedAt: iso(n.joinedAt),
  lastSeenAt: isoOrNull(n.lastSeenAt),
  lastError: n.lastError,
  failures: n.failures,
});

const NodeReportSchema = z.strictObject({
  state: z.string(),
  attestation: z.string(),
  code: z.string().optional(),
  message: z.string().optional(),
  ssh: z.strictObject({ host: z.string(), port: z.number() }).optional(),
  kernel: z.string().optional(),
  seenAt: Time,
});

export const VmEventViewSchema = z.strictObject({ at: Time, from: z.string().nullable(), to: z.string(), reason: z.string().nullable() });

export const VmViewSchema = z.strictObject({
  vmId: z.string(),
  name: z.string(),
  state: z.string(),
  stateSince: Time,
  /** The VM's hostname: the principal its SSH host certificate will name. */
  hostname: z.string(),
  image: z.strictObject({ ref: z.string(), digest: z.string(), kind: z.enum(['raw', 'bundle']) }),
  nonce: z.string(),
  sshPublicKey: z.string().nullable(),
  memoryMiB: z.number(),
  node: z.string().nullable(),
  /** Why the VM failed (or was refused), when it did. */
  reason: z.strictObject({ code: z.string(), message: z.string() }).nullable(),
  /** What the node last reported about the VM. Untrusted: the receipt comes from the CA. */
  nodeReport: NodeReportSchema.nullable(),
  createdAt: Time,
  updatedAt: Time,
  history: z.array(VmEventViewSchema).optional(),
});
export type VmView = z.infer<typeof VmViewSchema>;

export function vmView(vm: VmRecord, events?: readonly VmEvent[]): VmView {
  const r = vm.nodeReport;
  return {
    vmId: vm.id,
    name: vm.name,
    state: vm.state,
    stateSince: iso(vm.stateSince),
    hostname: vm.hostname,
    image: { ref: vm.imageRef, digest: vm.imageDigest, kind: vm.imageKind },
    nonce: vm.nonce,
    sshPublicKey: vm.sshPublicKey ?? null,
    memoryMiB: vm.memoryMiB,
    node: vm.nodeId ?? null,
    reason: vm.reason === undefined ? null : { code: vm.reason.code, message: vm.reason.message },
    nodeReport:
      r === undefined
        ? null
        : {
            state: r.state,
            attestation: r.attestation,
            ...(r.code === undefined ? {} : { code: r.code }),
            ...(r.message === undefined ? {} : { message: r.message }),
            ...(r.ssh === undefined ? {} : { ssh: { host: r.ssh.host, port: r.ssh.port } }),
            ...(r.kernel === undefined ? {} : { kernel: r.kernel }),
            seenAt: iso(r.seenAt),
          },
    createdAt: iso(vm.createdAt),
    updatedAt: iso(vm.updatedAt),
    ...(events === undefined ? {} : { history: events.map((e) => ({ at: iso(e.at), from: e.from, to: e.to, reason: e.reason })) }),
  };
}
