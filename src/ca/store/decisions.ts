// The decisions log: every judgement of evidence and every registration step's outcome,
// refusals and replays included. Append-only at the database level.
import type { Kysely } from 'kysely';
import type { CaSchema, DecisionTable } from './schema.js';

type Db = Kysely<CaSchema>;

export type DecisionRow = DecisionTable;

const CHUNK = 1000;

export async function insertDecisions(db: Db, rows: readonly DecisionRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += CHUNK) await db.insertInto('ca_decisions').values(rows.slice(i, i + CHUNK)).execute();
}

export interface DecisionQuery {
  readonly node?: string;
  /** Only decisions at or after this time (ms). */
  readonly since?: number;
  /** Continue after this (at, id) position (from a previous page). */
  readonly after?: { readonly at: number; readonly id: string };
  readonly limit: number;
}

/** One page of decisions, oldest first; `next` is set when more follow. */
export async function listDecisions(db: Db, q: DecisionQuery): Promise<{ decisions: DecisionRow[]; next?: { at: number; id: string } }> {
  let query = db.selectFrom('ca_decisions').selectAll();
  if (q.node !== undefined) query = query.where('node_id', '=', q.node);
  if (q.since !== undefined) query = query.where('at', '>=', q.since);
  const after = q.after;
  if (after !== undefined) query = query.where((eb) => eb.or([eb('at', '>', after.at), eb.and([eb('at', '=', after.at), eb('id', '>', after.id)])]));
  const rows = await query.orderBy('at').orderBy('id').limit(q.limit + 1).execute();
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return rows.length > q.limit && last !== undefined ? { decisions: page, next: { at: last.at, id: last.id } } : { decisions: page };
}

export async function decisionsForNonce(db: Db, nonce: string): Promise<DecisionRow[]> {
  return db.selectFrom('ca_decisions').selectAll().where('nonce', '=', nonce).orderBy('at').orderBy('id').execute();
}
