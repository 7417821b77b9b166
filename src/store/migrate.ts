// Migrations: Kysely's Migrator over an in-code list, one pair of bookkeeping tables per
// namespace (`<ns>_migration`, `<ns>_migration_lock`), so the CA and the manager can share
// one database without seeing each other's history.
//
// Concurrency: on PostgreSQL the Migrator holds a session advisory lock
// (pg_advisory_lock) while it reads the executed list and runs what is pending, so two
// processes opening one database at once run each migration exactly once; the second waits,
// then finds nothing to do. On SQLite each batch runs in one BEGIN IMMEDIATE transaction
// (see sqlite.ts), which serialises processes the same way. On both dialects a failing
// migration rolls back entirely.
import { Migrator, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { TrustlaunchError } from '../protocol/errors.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations and bookkeeping see any schema
type AnyDb = Kysely<any>;

export type Migrations = Readonly<Record<string, Migration>>;

const NAMESPACE = /^[a-z][a-z0-9_]{0,30}$/;
/** Four digits, an underscore, a name: sorting the names (which is what Kysely does) orders them. */
const MIGRATION_NAME = /^\d{4}_[a-z0-9_]{1,100}$/;

/** Throws TypeError for a namespace or migration name outside the conventions. */
export function checkArguments(migrations: Migrations, namespace: string): void {
  if (!NAMESPACE.test(namespace)) {
    throw new TypeError(`migration namespace "${namespace}" must match ${String(NAMESPACE)}`);
  }
  const bad = Object.keys(migrations).filter((name) => !MIGRATION_NAME.test(name));
  if (bad.length > 0) {
    throw new TypeError(`migration names must look like 0001_create_things; bad: ${bad.join(', ')}`);
  }
}

function migratorFor(db: AnyDb, migrations: Migrations, namespace: string): Migrator {
  const provider: MigrationProvider = { getMigrations: () => Promise.resolve({ ...migrations }) };
  return new Migrator({
    db,
    provider,
    migrationTableName: `${namespace}_migration`,
    migrationLockTableName: `${namespace}_migration_lock`,
  });
}

/** Runs every pending migration of `namespace`, in name order. Returns the names it ran. */
export async function migrateToLatest(db: AnyDb, migrations: Migrations, namespace: string): Promise<string[]> {
  checkArguments(migrations, namespace);
  const { error, results } = await migratorFor(db, migrations, namespace).migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    const where = failed === undefined ? '' : ` in migration ${failed}`;
    throw new TrustlaunchError('MIGRATION_FAILED', `${namespace} migrations failed${where}: ${describe(error)}`, {
      cause: error,
      detail: failed === undefined ? { namespace } : { namespace, migration: failed },
    });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * For read-only handles, which cannot migrate: fails unless every migration of `namespace`
 * has already run (a read-only reader of an older schema would misread it).
 */
export async function assertMigrated(db: AnyDb, migrations: Migrations, namespace: string): Promise<void> {
  checkArguments(migrations, namespace);
  const state = await migratorFor(db, migrations, namespace).getMigrations();
  const pending = state.filter((m) => m.executedAt === undefined).map((m) => m.name);
  if (pending.length > 0) {
    throw new TrustlaunchError('MIGRATION_FAILED', `read-only ${namespace} database lacks migrations ${pending.join(', ')}; open it read-write once`, {
      detail: { namespace, pending },
    });
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
