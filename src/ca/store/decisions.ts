// The decisions log: every judgement of evidence and every registration step's outcome,
// refusals and replays included. Append-only at the database level.
import { sql, type Kysely } from 'kysely';
import { dialectOf } from '../../store/index.js';
import { random } from '../random.js';
import type { CaSchema, DecisionTable } from './schema.js';

type Db = Kysely<CaSchema>;

export type DecisionRow = DecisionTable;

const CHUNK = 1000;
const TIME_DIGITS = 15;

/**
 * A decision id: the decision time (ms, zero-padded) and 64 random bits. Ids sort by time,
 * so the primary key is the log's order and new rows append at its end.
 */
export function decisionId(at: number): string {
  return `${String(at).padStart(TIME_DIGITS, '0')}-${random.take(8).toString('hex')}`;
}

export async function insertDecisions(db: Db, rows: readonly DecisionRow[]): Promise<void> {
  if (rows.length > 0 && dialectOf(db) === 'postgres') return insertDecisionsPostgres(db, rows);
  for (let i = 0; i < rows.length; i += CHUNK) await db.insertInto('ca_decisions').values(rows.slice(i, i + CHUNK)).execute();
}

/** PostgreSQL: one array per column through unnest (as insertReceipts does). */
async function insertDecisionsPostgres(db: Db, rows: readonly DecisionRow[]): Promise<void> {
  const column = <K extends keyof DecisionRow>(k: K): Array<DecisionRow[K]> => rows.map((r) => r[k]);
  await sql`
    insert into ca_decisions (id, at, kind, outcome, node_id, vm_id, nonce, step, code, message, evidence_hash, receipt_jti)
    select * from unnest(${column('id')}::text[], ${column('at')}::bigint[], ${column('kind')}::text[], ${column('outcome')}::text[], ${column('node_id')}::text[],
      ${column('vm_id')}::text[], ${column('nonce')}::text[], ${column('step')}::text[], ${column('code')}::text[], ${column('message')}::text[],
      ${column('evidence_hash')}::text[], ${column('receipt_jti')}::text[])`.execute(db);
}

export interface DecisionQuery {
  readonly node?: string;
  /** Only decisions at or after this time (ms). */
  readonly since?: number;
  /** Continue after this decision id (from a previous page). */
  readonly after?: string;
  readonly limit: number;
}

/** One page of decisions, oldest first; `next` (the last id) is set when more follow. */
export async function listDecisions(db: Db, q: DecisionQuery): Promise<{ decisions: DecisionRow[]; next?: string }> {
  let query = db.selectFrom('ca_decisions').selectAll();
  if (q.node !== undefined) query = query.where('node_id', '=', q.node);
  if (q.since !== undefined) query = query.where('id', '>=', String(q.since).padStart(TIME_DIGITS, '0'));
  if (q.after !== undefined) query = query.where('id', '>', q.after);
  const rows = await query.orderBy('id').limit(q.limit + 1).execute();
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return rows.length > q.limit && last !== undefined ? { decisions: page, next: last.id } : { decisions: page };
}

export async function decisionsForNonce(db: Db, nonce: string): Promise<DecisionRow[]> {
  return db.selectFrom('ca_decisions').selectAll().where('nonce', '=', nonce).orderBy('id').execute();
}
