// The CA's migrations (namespace `ca`). Receipts and decisions are append-only at the
// database level: no UPDATE or DELETE path exists for them, whoever asks.
import type { Kysely } from 'kysely';
import { appendOnly, COLUMN, createOneTimeTokenTable, oneOf, type Migrations } from '../../store/index.js';

export const CA_NAMESPACE = 'ca';

export const caMigrations: Migrations = {
  '0001_ca_core': {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations see any schema
    async up(db: Kysely<any>): Promise<void> {
      await createOneTimeTokenTable(db, 'ca_tokens');

      await db.schema
        .createTable('ca_registrations')
        .addColumn('id', COLUMN.id, (c) => c.primaryKey())
        .addColumn('node_id', COLUMN.text, (c) => c.notNull())
        .addColumn('token_id', COLUMN.text, (c) => c.notNull().references('ca_tokens.id'))
        .addColumn('ek_public', COLUMN.bytes, (c) => c.notNull())
        .addColumn('ek_certificate', COLUMN.bytes, (c) => c.notNull())
        .addColumn('ak_public', COLUMN.bytes, (c) => c.notNull())
        .addColumn('ak_name', COLUMN.bytes, (c) => c.notNull())
        .addColumn('secret_hash', COLUMN.text, (c) => c.notNull())
        .addColumn('qualifying_data', COLUMN.bytes, (c) => c.notNull())
        .addColumn('state', COLUMN.text, (c) => c.notNull().check(oneOf('state', ['pending', 'answered'])))
        .addColumn('created_at', COLUMN.time, (c) => c.notNull())
        .addColumn('expires_at', COLUMN.time, (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('ca_nodes')
        .addColumn('id', COLUMN.id, (c) => c.primaryKey())
        .addColumn('status', COLUMN.text, (c) => c.notNull().check(oneOf('status', ['active', 'revoked'])))
        .addColumn('ek_public', COLUMN.bytes, (c) => c.notNull())
        .addColumn('ek_certificate', COLUMN.bytes, (c) => c.notNull())
        .addColumn('ak_public', COLUMN.bytes, (c) => c.notNull())
        .addColumn('ak_name', COLUMN.bytes, (c) => c.notNull())
        .addColumn('platform', COLUMN.text, (c) => c.notNull())
        .addColumn('registered_at', COLUMN.time, (c) => c.notNull())
        .addColumn('revoked_at', COLUMN.time)
        .addColumn('revoke_reason', COLUMN.text)
        .execute();

      await db.schema
        .createTable('ca_allowlist')
        .addColumn('name', COLUMN.id, (c) => c.primaryKey())
        .addColumn('kernel', COLUMN.text, (c) => c.notNull())
        .addColumn('initrd', COLUMN.text)
        .addColumn('cmdline', COLUMN.text)
        .addColumn('created_at', COLUMN.time, (c) => c.notNull())
        .addColumn('expires_at', COLUMN.time)
        .addColumn('revoked_at', COLUMN.time)
        .execute();
      await db.schema.createIndex('ca_allowlist_kernel').on('ca_allowlist').column('kernel').execute();

      await db.schema
        .createTable('ca_platforms')
        .addColumn('name', COLUMN.id, (c) => c.primaryKey())
        .addColumn('hypervisor', COLUMN.text, (c) => c.notNull())
        .addColumn('minidomain', COLUMN.text, (c) => c.notNull())
        .addColumn('firmware', COLUMN.text)
        .addColumn('boot_config', COLUMN.text)
        .addColumn('pcrs', COLUMN.json)
        .addColumn('created_at', COLUMN.time, (c) => c.notNull())
        .execute();

      // One receipt per nonce across the whole CA: the primary key is the nonce.
      await db.schema
        .createTable('ca_receipts')
        .addColumn('nonce', COLUMN.text, (c) => c.primaryKey())
        .addColumn('jti', COLUMN.text, (c) => c.notNull())
        .addColumn('node_id', COLUMN.text, (c) => c.notNull())
        .addColumn('vm_id', COLUMN.text, (c) => c.notNull())
        .addColumn('status', COLUMN.text, (c) => c.notNull().check(oneOf('status', ['affirming', 'contraindicated'])))
        .addColumn('receipt', COLUMN.text, (c) => c.notNull())
        .addColumn('host_certificate', COLUMN.text)
        .addColumn('issued_at', COLUMN.time, (c) => c.notNull())
        .addColumn('expires_at', COLUMN.time, (c) => c.notNull())
        .execute();
      await appendOnly(db, 'ca_receipts');

      await db.schema
        .createTable('ca_decisions')
        .addColumn('id', COLUMN.id, (c) => c.primaryKey())
        .addColumn('at', COLUMN.time, (c) => c.notNull())
        .addColumn('kind', COLUMN.text, (c) => c.notNull().check(oneOf('kind', ['evidence', 'registration'])))
        .addColumn('outcome', COLUMN.text, (c) => c.notNull().check(oneOf('outcome', ['affirming', 'contraindicated', 'refused', 'challenged', 'registered'])))
        .addColumn('node_id', COLUMN.text)
        .addColumn('vm_id', COLUMN.text)
        .addColumn('nonce', COLUMN.text)
        .addColumn('step', COLUMN.text)
        .addColumn('code', COLUMN.text)
        .addColumn('message', COLUMN.text)
        .addColumn('evidence_hash', COLUMN.text)
        .addColumn('receipt_jti', COLUMN.text)
        .execute();
      // Decision ids begin with the time (store/decisions.ts decisionId), so the primary
      // key orders them and new rows append at its end; no other index on random values.
      await db.schema.createIndex('ca_decisions_node').on('ca_decisions').columns(['node_id', 'id']).execute();
      await appendOnly(db, 'ca_decisions');
    },
  },
};
