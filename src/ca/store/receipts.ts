// Receipts by nonce. The nonce is the primary key and the table is append-only: a nonce
// gets at most one receipt, ever, and a stored receipt never changes.
import { sql, type Kysely } from 'kysely';
import { dialectOf } from '../../store/index.js';
import type { CaSchema, ReceiptTable } from './schema.js';

type Db = Kysely<CaSchema>;

export type ReceiptRow = ReceiptTable;

/** Inserts the receipts whose nonce has none yet; returns the nonces that were stored. */
export async function insertReceipts(db: Db, rows: readonly ReceiptRow[]): Promise<Set<string>> {
  if (rows.length > 0 && dialectOf(db) === 'postgres') return insertReceiptsPostgres(db, rows);
  const stored = new Set<string>();
  for (let i = 0; i < rows.length; i += CHUNK) {
    const chunk = rows.slice(i, i + CHUNK);
    const inserted = await db
      .insertInto('ca_receipts')
      .values(chunk)
      .onConflict((oc) => oc.column('nonce').doNothing())
      .returning('nonce')
      .execute();
    for (const r of inserted) stored.add(r.nonce);
  }
  return stored;
}

/** Rows per INSERT: well inside SQLite's 32766 and PostgreSQL's 65535 bound parameters. */
const CHUNK = 1000;

/**
 * PostgreSQL: the rows as one array per column through unnest — one statement of fixed
 * text and nine parameters whatever the row count, instead of a VALUES list Kysely builds
 * and pg serialises parameter by parameter (the group commit's largest cost on that
 * dialect).
 */
async function insertReceiptsPostgres(db: Db, rows: readonly ReceiptRow[]): Promise<Set<string>> {
  const column = <K extends keyof ReceiptRow>(k: K): Array<ReceiptRow[K]> => rows.map((r) => r[k]);
  const { rows: inserted } = await sql<{ nonce: string }>`
    insert into ca_receipts (nonce, jti, node_id, vm_id, status, receipt, host_certificate, issued_at, expires_at)
    select * from unnest(${column('nonce')}::text[], ${column('jti')}::text[], ${column('node_id')}::text[], ${column('vm_id')}::text[], ${column('status')}::text[],
      ${column('receipt')}::text[], ${column('host_certificate')}::text[], ${column('issued_at')}::bigint[], ${column('expires_at')}::bigint[])
    on conflict (nonce) do nothing
    returning nonce`.execute(db);
  return new Set(inserted.map((r) => r.nonce));
}

export async function findReceipt(db: Db, nonce: string): Promise<{ receipt: string; hostCertificate?: string; status: ReceiptRow['status'] } | undefined> {
  const row = await db.selectFrom('ca_receipts').select(['receipt', 'host_certificate', 'status']).where('nonce', '=', nonce).executeTakeFirst();
  if (row === undefined) return undefined;
  return row.host_certificate === null ? { receipt: row.receipt, status: row.status } : { receipt: row.receipt, hostCertificate: row.host_certificate, status: row.status };
}

export async function countReceipts(db: Db): Promise<number> {
  const r = await db.selectFrom('ca_receipts').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}
