// Queries of the policy tables: allowlist, platform reference values, and the node facts
// the verifier needs. Rows map to the zod-described domain types of src/ca/policy/.
import type { Kysely, Selectable } from 'kysely';
import { TrustlaunchError } from '../../protocol/errors.js';
import { decodeBytes, decodeJson, encodeJson, isUniqueViolation } from '../../store/index.js';
import type { Digest } from '../../protocol/digest.js';
import type { AllowlistEntry } from '../policy/allowlist.js';
import type { PlatformReference } from '../policy/platform.js';
import type { AllowlistTable, CaSchema, NodeStatus, PlatformTable } from './schema.js';

type Db = Kysely<CaSchema>;

function toEntry(r: Selectable<AllowlistTable>): AllowlistEntry {
  return {
    name: r.name,
    kernel: r.kernel as Digest,
    ...(r.initrd === null ? {} : { initrd: r.initrd as Digest }),
    ...(r.cmdline === null ? {} : { cmdline: r.cmdline as Digest }),
    createdAt: r.created_at,
    ...(r.expires_at === null ? {} : { expiresAt: r.expires_at }),
    ...(r.revoked_at === null ? {} : { revokedAt: r.revoked_at }),
  };
}

function toReference(r: Selectable<PlatformTable>): PlatformReference {
  return {
    name: r.name,
    hypervisor: r.hypervisor as Digest,
    minidomain: r.minidomain as Digest,
    ...(r.firmware === null ? {} : { firmware: r.firmware as Digest }),
    ...(r.boot_config === null ? {} : { bootConfig: r.boot_config as Digest }),
    ...(r.pcrs === null ? {} : { pcrs: decodeJson(r.pcrs) as Record<string, string> }),
    createdAt: r.created_at,
  };
}

async function insertOrConflict(what: string, name: string, insert: () => Promise<unknown>): Promise<void> {
  try {
    await insert();
  } catch (e) {
    if (isUniqueViolation(e)) throw new TrustlaunchError('CONFLICT', `${what} ${name} already exists`);
    throw e;
  }
}

export async function addAllowlistEntry(db: Db, e: AllowlistEntry): Promise<void> {
  await insertOrConflict('allowlist entry', e.name, () =>
    db
      .insertInto('ca_allowlist')
      .values({ name: e.name, kernel: e.kernel, initrd: e.initrd ?? null, cmdline: e.cmdline ?? null, created_at: e.createdAt, expires_at: e.expiresAt ?? null, revoked_at: null })
      .execute(),
  );
}

export async function listAllowlist(db: Db): Promise<AllowlistEntry[]> {
  return (await db.selectFrom('ca_allowlist').selectAll().orderBy('name').execute()).map(toEntry);
}

/** Revokes an entry (idempotent: a revoked entry keeps its first revocation time). */
export async function revokeAllowlistEntry(db: Db, name: string, at: number): Promise<AllowlistEntry> {
  await db.updateTable('ca_allowlist').set({ revoked_at: at }).where('name', '=', name).where('revoked_at', 'is', null).execute();
  const row = await db.selectFrom('ca_allowlist').selectAll().where('name', '=', name).executeTakeFirst();
  if (row === undefined) throw new TrustlaunchError('NOT_FOUND', `no allowlist entry ${name}`);
  return toEntry(row);
}

export async function addPlatformReference(db: Db, p: PlatformReference): Promise<void> {
  await insertOrConflict('platform reference', p.name, () =>
    db
      .insertInto('ca_platforms')
      .values({
        name: p.name,
        hypervisor: p.hypervisor,
        minidomain: p.minidomain,
        firmware: p.firmware ?? null,
        boot_config: p.bootConfig ?? null,
        pcrs: p.pcrs === undefined ? null : encodeJson(p.pcrs),
        created_at: p.createdAt,
      })
      .execute(),
  );
}

export async function listPlatformReferences(db: Db): Promise<PlatformReference[]> {
  return (await db.selectFrom('ca_platforms').selectAll().orderBy('created_at').orderBy('name').execute()).map(toReference);
}

export async function removePlatformReference(db: Db, name: string): Promise<void> {
  const result = await db.deleteFrom('ca_platforms').where('name', '=', name).executeTakeFirst();
  if (Number(result.numDeletedRows) === 0) throw new TrustlaunchError('NOT_FOUND', `no platform reference ${name}`);
}

/** What the verifier needs of every node: status and AK public area. */
export async function listNodeKeys(db: Db): Promise<Array<{ id: string; status: NodeStatus; akPublic: Buffer }>> {
  const rows = await db.selectFrom('ca_nodes').select(['id', 'status', 'ak_public']).execute();
  return rows.map((r) => ({ id: r.id, status: r.status, akPublic: decodeBytes(r.ak_public) }));
}

/** Of `ids`, those no longer active (checked again inside the commit that stores receipts). */
export async function inactiveNodes(db: Db, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db.selectFrom('ca_nodes').select('id').where('id', 'in', [...new Set(ids)]).where('status', '<>', 'active').execute();
  return new Set(rows.map((r) => r.id));
}

/** Of allowlist entry `names`, those revoked (checked again inside the commit). */
export async function revokedEntries(db: Db, names: readonly string[]): Promise<Set<string>> {
  if (names.length === 0) return new Set();
  const rows = await db.selectFrom('ca_allowlist').select('name').where('name', 'in', [...new Set(names)]).where('revoked_at', 'is not', null).execute();
  return new Set(rows.map((r) => r.name));
}
