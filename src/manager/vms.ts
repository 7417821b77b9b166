// VM records and their state changes. Every change goes through `transition`, which
// checks the lifecycle table (a change outside it is a bug: ILLEGAL_TRANSITION), applies
// it only if the VM is still in a state the caller expected (compare-and-set on the
// record's version, safe across processes on both databases), and logs an event.
import type { Kysely } from 'kysely';
import type { Digest } from '../protocol/digest.js';
import { isErrorCode, TrustlaunchError, type ErrorCode } from '../protocol/errors.js';
import { decodeJson, encodeJson, isUniqueViolation, transaction } from '../store/index.js';
import type { ManagerSchema, VmsTable } from './db/schema.js';
import { newId } from './ids.js';
import { assertTransition, isVmState, type VmState } from './lifecycle.js';
import type { NodeVmReport } from './node-report.js';

export interface VmReason {
  readonly code: ErrorCode;
  readonly message: string;
}

export interface VmRecord {
  readonly id: string;
  readonly userId: string;
  readonly name: string;
  readonly imageRef: string;
  readonly imageDigest: Digest;
  readonly imageKind: 'raw' | 'bundle';
  readonly nonce: string;
  readonly sshPublicKey: string | undefined;
  readonly hostname: string;
  readonly memoryMiB: number;
  readonly nodeId: string | undefined;
  readonly state: VmState;
  readonly version: number;
  readonly stateSince: number;
  readonly reason: VmReason | undefined;
  /** What the node last said about the VM. Untrusted: shown to the user, never believed. */
  readonly nodeReport: NodeVmReport | undefined;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface VmEvent {
  readonly seq: number;
  readonly at: number;
  readonly from: VmState | null;
  readonly to: VmState;
  readonly reason: string | null;
}

export interface NewVm {
  readonly userId: string;
  readonly name?: string | undefined;
  readonly imageRef: string;
  readonly imageDigest: Digest;
  readonly imageKind: 'raw' | 'bundle';
  readonly nonce: string;
  readonly sshPublicKey?: string | undefined;
  readonly memoryMiB: number;
}

type Db = Kysely<ManagerSchema>;

function toVm(r: VmsTable): VmRecord {
  if (!isVmState(r.state)) throw new TrustlaunchError('INTERNAL', `VM ${r.id} has the unknown state ${r.state}`);
  return {
    id: r.id,
    userId: r.user_id,
    name: r.name,
    imageRef: r.image_ref,
    imageDigest: r.image_digest as Digest,
    imageKind: r.image_kind,
    nonce: r.nonce,
    sshPublicKey: r.ssh_public_key ?? undefined,
    hostname: r.hostname,
    memoryMiB: r.memory_mib,
    nodeId: r.node_id ?? undefined,
    state: r.state,
    version: r.version,
    stateSince: r.state_since,
    reason:
      r.reason_code === null
        ? undefined
        : { code: isErrorCode(r.reason_code) ? r.reason_code : 'INTERNAL', message: r.reason_message ?? '' },
    nodeReport: r.node_report === null ? undefined : (decodeJson(r.node_report) as unknown as NodeVmReport),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** Records a new VM in `requested`. Its id is also its hostname (a DNS label, globally unique). */
export async function insertVm(db: Db, vm: NewVm): Promise<VmRecord> {
  const id = newId('vm');
  const now = Date.now();
  const row: VmsTable = {
    id,
    user_id: vm.userId,
    name: vm.name ?? id,
    image_ref: vm.imageRef,
    image_digest: vm.imageDigest,
    image_kind: vm.imageKind,
    nonce: vm.nonce,
    ssh_public_key: vm.sshPublicKey ?? null,
    hostname: id,
    memory_mib: vm.memoryMiB,
    node_id: null,
    state: 'requested',
    version: 1,
    state_since: now,
    reason_code: null,
    reason_message: null,
    node_report: null,
    created_at: now,
    updated_at: now,
  };
  try {
    await transaction(db, async (trx) => {
      await trx.insertInto('mgr_vms').values(row).execute();
      await trx.insertInto('mgr_vm_events').values({ vm_id: id, seq: 1, at: now, from_state: null, to_state: 'requested', reason: null }).execute();
    });
  } catch (e) {
    if (isUniqueViolation(e)) throw new TrustlaunchError('CONFLICT', `you already have a VM named ${row.name}`);
    throw e;
  }
  return toVm(row);
}

export async function getVm(db: Db, id: string): Promise<VmRecord | undefined> {
  const row = await db.selectFrom('mgr_vms').selectAll().where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : toVm(row);
}

/** A user's VM by id or name; another user's VM is simply not found. */
export async function findUserVm(db: Db, userId: string, ref: string): Promise<VmRecord | undefined> {
  const row = await db
    .selectFrom('mgr_vms')
    .selectAll()
    .where('user_id', '=', userId)
    .where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)]))
    .orderBy('created_at')
    .executeTakeFirst();
  return row === undefined ? undefined : toVm(row);
}

export async function listUserVms(db: Db, userId: string): Promise<VmRecord[]> {
  return (await db.selectFrom('mgr_vms').selectAll().where('user_id', '=', userId).orderBy('created_at').orderBy('id').execute()).map(toVm);
}

export async function listVmsIn(db: Db, states: readonly VmState[]): Promise<VmRecord[]> {
  if (states.length === 0) return [];
  return (await db.selectFrom('mgr_vms').selectAll().where('state', 'in', [...states]).orderBy('created_at').execute()).map(toVm);
}

export async function listNodeVms(db: Db, nodeId: string): Promise<VmRecord[]> {
  return (await db.selectFrom('mgr_vms').selectAll().where('node_id', '=', nodeId).orderBy('created_at').execute()).map(toVm);
}

/** Ids of every VM placed on `nodeId` (for telling the node's own VMs from orphans). */
export async function vmIdsOnNode(db: Db, nodeId: string): Promise<Set<string>> {
  const rows = await db.selectFrom('mgr_vms').select('id').where('node_id', '=', nodeId).execute();
  return new Set(rows.map((r) => r.id));
}

/** Memory and VM count the manager has placed on each node and not yet seen end. */
export async function activePlacements(db: Db): Promise<Map<string, { memoryMiB: number; vms: number }>> {
  const rows = await db
    .selectFrom('mgr_vms')
    .select(['node_id', 'memory_mib'])
    .where('node_id', 'is not', null)
    .where('state', 'not in', ['stopped', 'failed'])
    .execute();
  const out = new Map<string, { memoryMiB: number; vms: number }>();
  for (const r of rows) {
    if (r.node_id === null) continue;
    const cur = out.get(r.node_id) ?? { memoryMiB: 0, vms: 0 };
    out.set(r.node_id, { memoryMiB: cur.memoryMiB + r.memory_mib, vms: cur.vms + 1 });
  }
  return out;
}

export async function vmEvents(db: Db, id: string): Promise<VmEvent[]> {
  const rows = await db.selectFrom('mgr_vm_events').selectAll().where('vm_id', '=', id).orderBy('seq').execute();
  return rows.map((r) => ({
    seq: r.seq,
    at: r.at,
    from: isVmState(r.from_state) ? r.from_state : null,
    to: isVmState(r.to_state) ? r.to_state : 'failed',
    reason: r.reason,
  }));
}

export interface TransitionOptions {
  /** The states the caller expects the VM in; the change happens only from one of them. */
  readonly from: VmState | readonly VmState[];
  readonly to: VmState;
  readonly reason?: VmReason;
  readonly nodeId?: string;
  readonly nodeReport?: NodeVmReport;
}

const CAS_ATTEMPTS = 5;

/**
 * Moves a VM from one of `from` to `to`. Every (from, to) pair must be in the lifecycle
 * table (ILLEGAL_TRANSITION otherwise, before anything changes). Returns the new record, or
 * undefined when the VM is gone or no longer in one of `from` (someone else moved it).
 */
export async function transition(db: Db, id: string, opts: TransitionOptions): Promise<VmRecord | undefined> {
  const from: readonly VmState[] = typeof opts.from === 'string' ? [opts.from] : opts.from;
  for (const f of from) assertTransition(f, opts.to);
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const outcome = await transaction(db, async (trx) => {
      const row = await trx.selectFrom('mgr_vms').selectAll().where('id', '=', id).executeTakeFirst();
      if (row === undefined || !from.includes(row.state as VmState)) return { done: true as const, vm: undefined };
      const now = Date.now();
      const version = row.version + 1;
      const patch: Partial<VmsTable> = { state: opts.to, version, state_since: now, updated_at: now };
      if (opts.reason !== undefined) {
        patch.reason_code = opts.reason.code;
        patch.reason_message = opts.reason.message.slice(0, 1000);
      }
      if (opts.nodeId !== undefined) patch.node_id = opts.nodeId;
      if (opts.nodeReport !== undefined) patch.node_report = encodeJson(opts.nodeReport);
      const updated = await trx.updateTable('mgr_vms').set(patch).where('id', '=', id).where('version', '=', row.version).executeTakeFirst();
      if (updated.numUpdatedRows !== 1n) return { done: false as const };
      await trx
        .insertInto('mgr_vm_events')
        .values({
          vm_id: id,
          seq: version,
          at: now,
          from_state: row.state,
          to_state: opts.to,
          reason: opts.reason === undefined ? null : `${opts.reason.code}: ${opts.reason.message}`.slice(0, 1000),
        })
        .execute();
      return { done: true as const, vm: toVm({ ...row, ...patch }) };
    });
    if (outcome.done) return outcome.vm;
  }
  throw new TrustlaunchError('CONFLICT', `VM ${id} kept changing; state change to ${opts.to} abandoned`);
}

/** Stores the node's latest report without a state change. */
export async function recordNodeReport(db: Db, id: string, report: NodeVmReport): Promise<void> {
  await db.updateTable('mgr_vms').set({ node_report: encodeJson(report), updated_at: Date.now() }).where('id', '=', id).execute();
}

export async function deleteVmRecord(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('mgr_vms').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}
