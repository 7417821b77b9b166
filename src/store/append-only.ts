// Append-only tables, enforced by the database itself: after `appendOnly(db, 'decisions')`
// every UPDATE and DELETE on the table fails (and on PostgreSQL every TRUNCATE), whoever
// issues it. Detect the failure with isAppendOnlyViolation().
//   SQLite: BEFORE UPDATE / BEFORE DELETE triggers that RAISE(ABORT, 'append-only table …').
//     INSERT OR REPLACE deletes the old row, which fires the DELETE trigger only because
//     openDatabase turns recursive_triggers on; UPSERT's DO UPDATE fires the UPDATE trigger.
//   PostgreSQL: row triggers BEFORE UPDATE OR DELETE and a statement trigger BEFORE
//     TRUNCATE (TRUNCATE skips row triggers), all calling one function that raises
//     SQLSTATE TLA01.
import { sql, type Kysely } from 'kysely';
import { dialectOf } from './dialect.js';
import { APPEND_ONLY_MESSAGE_PREFIX, APPEND_ONLY_SQLSTATE } from './errors.js';

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,40}$/;
const PG_FUNCTION = 'trustlaunch_refuse_change';

function checkTable(table: string): void {
  if (!IDENTIFIER.test(table)) throw new TypeError(`table name "${table}" must match ${String(IDENTIFIER)}`);
}

/** Call from a migration, after creating `table`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations see any schema
export async function appendOnly(db: Kysely<any>, table: string): Promise<void> {
  checkTable(table);
  if (dialectOf(db) === 'sqlite') {
    for (const op of ['UPDATE', 'DELETE'] as const) {
      // RAISE takes a literal message, so the table name is part of the SQL text; it is a
      // checked identifier, never input.
      const message = `${APPEND_ONLY_MESSAGE_PREFIX}${table}: ${op} refused`;
      await sql`create trigger ${sql.id(`${table}_append_only_${op.toLowerCase()}`)} before ${sql.raw(op)} on ${sql.id(table)}
        begin select raise(abort, ${sql.lit(message)}); end`.execute(db);
    }
    return;
  }
  // One function serves every append-only table (the Migrator's advisory lock keeps two
  // processes from replacing it at once).
  await sql`create or replace function ${sql.id(PG_FUNCTION)}() returns trigger language plpgsql as $$
    begin
      raise exception using
        errcode = ${sql.lit(APPEND_ONLY_SQLSTATE)},
        message = format(${sql.lit(`${APPEND_ONLY_MESSAGE_PREFIX}%s: %s refused`)}, tg_table_name, tg_op);
    end
  $$`.execute(db);
  await sql`create trigger ${sql.id(`${table}_append_only_row`)} before update or delete on ${sql.id(table)}
    for each row execute function ${sql.id(PG_FUNCTION)}()`.execute(db);
  await sql`create trigger ${sql.id(`${table}_append_only_truncate`)} before truncate on ${sql.id(table)}
    for each statement execute function ${sql.id(PG_FUNCTION)}()`.execute(db);
}

/** The inverse, for a migration's `down`. The shared PostgreSQL function stays (others use it). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations see any schema
export async function dropAppendOnly(db: Kysely<any>, table: string): Promise<void> {
  checkTable(table);
  const triggers = dialectOf(db) === 'sqlite' ? ['update', 'delete'] : ['row', 'truncate'];
  for (const t of triggers) {
    const name = sql.id(`${table}_append_only_${t}`);
    if (dialectOf(db) === 'sqlite') await sql`drop trigger if exists ${name}`.execute(db);
    else await sql`drop trigger if exists ${name} on ${sql.id(table)}`.execute(db);
  }
}
