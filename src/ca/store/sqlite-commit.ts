// The SQLite commit thread's connection (verifier/commit-worker.ts): better-sqlite3 with
// the statements of a group commit prepared once — the revocation re-check, the receipt
// insert (the nonce step) and the decision insert — instead of Kysely building, compiling
// and preparing every query for every group, which cost about three times the CPU per
// receipt (docs/ca.md §9). Everything else in the CA goes through Kysely.
//
// The store migrated the file already (the main thread opens it first); this connection
// takes the store's settings (src/store/sqlite.ts) — WAL, synchronous=FULL, foreign keys,
// recursive triggers, the busy timeout — and checks that they took, so a commit that
// returned is on disk exactly as one through the store would be.
import Database from 'better-sqlite3';
import { TrustlaunchError } from '../../protocol/errors.js';
import { SQLITE_BUSY_TIMEOUT_MS } from '../../store/sqlite.js';
import type { DecisionRow } from './decisions.js';
import type { ReceiptRow } from './receipts.js';

/** synchronous=FULL as `pragma synchronous` reads it back. */
const SYNCHRONOUS_FULL = 2;
/** The connection settings that decide durability and constraints (compared with the store's in the tests). */
export const COMMIT_SETTINGS = ['journal_mode', 'synchronous', 'foreign_keys', 'recursive_triggers', 'busy_timeout'] as const;

/** What one group commit does to the database (verifier/commit-group.ts runs it). */
export interface GroupStatements {
  /** Of `ids`, the nodes no longer active. */
  inactiveNodes(ids: readonly string[]): Promise<Set<string>> | Set<string>;
  /** Of allowlist entry `names`, those revoked. */
  revokedEntries(names: readonly string[]): Promise<Set<string>> | Set<string>;
  /** Inserts the receipts whose nonce has none yet; the nonces that were stored. */
  insertReceipts(rows: readonly ReceiptRow[]): Promise<Set<string>> | Set<string>;
  insertDecisions(rows: readonly DecisionRow[]): Promise<void> | void;
}

export class SqliteCommitConnection implements GroupStatements {
  readonly #db: Database.Database;
  readonly #begin: Database.Statement;
  readonly #commit: Database.Statement;
  readonly #rollback: Database.Statement;
  readonly #inactiveNode: Database.Statement<[string], unknown>;
  readonly #revokedEntry: Database.Statement<[string], unknown>;
  readonly #insertReceipt: Database.Statement<unknown[]>;
  readonly #insertDecision: Database.Statement<unknown[]>;

  private constructor(db: Database.Database) {
    this.#db = db;
    // BEGIN IMMEDIATE, as the store's driver: a second writer (another CA process) waits
    // out busy_timeout instead of failing on the lock upgrade.
    this.#begin = db.prepare('begin immediate');
    this.#commit = db.prepare('commit');
    this.#rollback = db.prepare('rollback');
    this.#inactiveNode = db.prepare("select 1 from ca_nodes where id = ? and status <> 'active'");
    this.#revokedEntry = db.prepare('select 1 from ca_allowlist where name = ? and revoked_at is not null');
    this.#insertReceipt = db.prepare(
      'insert into ca_receipts (nonce, jti, node_id, vm_id, status, receipt, host_certificate, issued_at, expires_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (nonce) do nothing',
    );
    this.#insertDecision = db.prepare(
      'insert into ca_decisions (id, at, kind, outcome, node_id, vm_id, nonce, step, code, message, evidence_hash, receipt_jti) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
  }

  /** Opens the (already migrated) database file at `path`. UNAVAILABLE when it cannot. */
  static open(path: string): SqliteCommitConnection {
    let db: Database.Database;
    try {
      db = new Database(path, { fileMustExist: true, timeout: SQLITE_BUSY_TIMEOUT_MS });
    } catch (e) {
      throw new TrustlaunchError('UNAVAILABLE', `cannot open SQLite database ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('recursive_triggers = ON');
      db.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      const connection = new SqliteCommitConnection(db);
      const settings = connection.settings();
      if (settings['journal_mode'] !== 'wal' || settings['synchronous'] !== SYNCHRONOUS_FULL || settings['foreign_keys'] !== 1) throw new Error(`unexpected settings ${JSON.stringify(settings)}`);
      return connection;
    } catch (e) {
      db.close();
      throw new TrustlaunchError('UNAVAILABLE', `cannot use SQLite database ${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The values of COMMIT_SETTINGS on this connection. */
  settings(): Record<(typeof COMMIT_SETTINGS)[number], unknown> {
    return Object.fromEntries(COMMIT_SETTINGS.map((name) => [name, this.#db.pragma(name, { simple: true })])) as Record<(typeof COMMIT_SETTINGS)[number], unknown>;
  }

  /** Runs `fn` in one transaction: committed (durably) when it resolves, rolled back when it throws. */
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    this.#begin.run();
    try {
      const result = await fn();
      this.#commit.run();
      return result;
    } catch (e) {
      if (this.#db.inTransaction) this.#rollback.run();
      throw e;
    }
  }

  inactiveNodes(ids: readonly string[]): Set<string> {
    return new Set([...new Set(ids)].filter((id) => this.#inactiveNode.get(id) !== undefined));
  }

  revokedEntries(names: readonly string[]): Set<string> {
    return new Set([...new Set(names)].filter((name) => this.#revokedEntry.get(name) !== undefined));
  }

  insertReceipts(rows: readonly ReceiptRow[]): Set<string> {
    const stored = new Set<string>();
    for (const r of rows) {
      const { changes } = this.#insertReceipt.run(r.nonce, r.jti, r.node_id, r.vm_id, r.status, r.receipt, r.host_certificate, r.issued_at, r.expires_at);
      if (changes === 1) stored.add(r.nonce);
    }
    return stored;
  }

  insertDecisions(rows: readonly DecisionRow[]): void {
    for (const d of rows) this.#insertDecision.run(d.id, d.at, d.kind, d.outcome, d.node_id, d.vm_id, d.nonce, d.step, d.code, d.message, d.evidence_hash, d.receipt_jti);
  }

  close(): void {
    this.#db.close();
  }
}
