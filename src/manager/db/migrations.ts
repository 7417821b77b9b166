// The manager's migrations (namespace `manager`). Append new ones; never edit one that ran.
import type { Kysely } from 'kysely';
import { COLUMN, createOneTimeTokenTable, oneOf, type Migrations } from '../../store/index.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations see any schema
type AnyDb = Kysely<any>;

async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('mgr_users')
    .addColumn('id', COLUMN.id, (c) => c.primaryKey())
    .addColumn('name', COLUMN.text, (c) => c.notNull().unique())
    .addColumn('role', COLUMN.text, (c) => c.notNull().check(oneOf('role', ['admin', 'user'])))
    .addColumn('token_hash', COLUMN.text, (c) => c.notNull().unique())
    .addColumn('created_at', COLUMN.time, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('mgr_blobs')
    .addColumn('digest', COLUMN.id, (c) => c.primaryKey())
    .addColumn('size', COLUMN.int, (c) => c.notNull())
    .addColumn('created_at', COLUMN.time, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('mgr_images')
    .addColumn('name', COLUMN.id, (c) => c.primaryKey())
    .addColumn('digest', COLUMN.text, (c) => c.notNull())
    .addColumn('kind', COLUMN.text, (c) => c.notNull().check(oneOf('kind', ['raw', 'bundle'])))
    .addColumn('size', COLUMN.int, (c) => c.notNull())
    .addColumn('created_at', COLUMN.time, (c) => c.notNull())
    .addColumn('created_by', COLUMN.text, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('mgr_images_digest').on('mgr_images').column('digest').execute();

  await db.schema
    .createTable('mgr_image_parts')
    .addColumn('image_name', COLUMN.id, (c) => c.notNull().references('mgr_images.name').onDelete('cascade'))
    .addColumn('role', COLUMN.text, (c) => c.notNull().check(oneOf('role', ['image', 'manifest', 'kernel', 'initrd', 'cmdline'])))
    .addColumn('digest', COLUMN.text, (c) => c.notNull().references('mgr_blobs.digest'))
    .addPrimaryKeyConstraint('mgr_image_parts_pk', ['image_name', 'role'])
    .execute();
  await db.schema.createIndex('mgr_image_parts_digest').on('mgr_image_parts').column('digest').execute();

  await createOneTimeTokenTable(db, 'mgr_join_tokens');

  await db.schema
    .createTable('mgr_nodes')
    .addColumn('id', COLUMN.id, (c) => c.primaryKey())
    .addColumn('endpoint', COLUMN.text, (c) => c.notNull())
    .addColumn('dom0_ca', COLUMN.text, (c) => c.notNull())
    .addColumn('dom0_token', COLUMN.text, (c) => c.notNull())
    .addColumn('status', COLUMN.text, (c) => c.notNull().check(oneOf('status', ['joining', 'up', 'down'])))
    .addColumn('joined_at', COLUMN.time, (c) => c.notNull())
    .addColumn('last_seen_at', COLUMN.time)
    .addColumn('last_error', COLUMN.text)
    .addColumn('failures', COLUMN.int, (c) => c.notNull())
    .addColumn('memory_total_mib', COLUMN.int, (c) => c.notNull())
    .addColumn('memory_used_mib', COLUMN.int, (c) => c.notNull())
    .addColumn('vm_count', COLUMN.int, (c) => c.notNull())
    .addColumn('max_vms', COLUMN.int, (c) => c.notNull())
    .addColumn('health', COLUMN.text)
    .addColumn('device_kind', COLUMN.text)
    .execute();

  await db.schema
    .createTable('mgr_node_blobs')
    .addColumn('node_id', COLUMN.id, (c) => c.notNull().references('mgr_nodes.id').onDelete('cascade'))
    .addColumn('digest', COLUMN.text, (c) => c.notNull())
    .addColumn('delivered_at', COLUMN.time, (c) => c.notNull())
    .addPrimaryKeyConstraint('mgr_node_blobs_pk', ['node_id', 'digest'])
    .execute();

  await db.schema
    .createTable('mgr_vms')
    .addColumn('id', COLUMN.id, (c) => c.primaryKey())
    .addColumn('user_id', COLUMN.id, (c) => c.notNull().references('mgr_users.id').onDelete('cascade'))
    .addColumn('name', COLUMN.text, (c) => c.notNull())
    .addColumn('image_ref', COLUMN.text, (c) => c.notNull())
    .addColumn('image_digest', COLUMN.text, (c) => c.notNull())
    .addColumn('image_kind', COLUMN.text, (c) => c.notNull().check(oneOf('image_kind', ['raw', 'bundle'])))
    .addColumn('nonce', COLUMN.text, (c) => c.notNull())
    .addColumn('ssh_public_key', COLUMN.text)
    .addColumn('hostname', COLUMN.text, (c) => c.notNull())
    .addColumn('memory_mib', COLUMN.int, (c) => c.notNull())
    // No foreign key: a removed node's VMs keep its id as history.
    .addColumn('node_id', COLUMN.id)
    .addColumn('state', COLUMN.text, (c) => c.notNull())
    .addColumn('version', COLUMN.int, (c) => c.notNull())
    .addColumn('state_since', COLUMN.time, (c) => c.notNull())
    .addColumn('reason_code', COLUMN.text)
    .addColumn('reason_message', COLUMN.text)
    .addColumn('node_report', COLUMN.json)
    .addColumn('created_at', COLUMN.time, (c) => c.notNull())
    .addColumn('updated_at', COLUMN.time, (c) => c.notNull())
    .addUniqueConstraint('mgr_vms_user_name', ['user_id', 'name'])
    .execute();
  await db.schema.createIndex('mgr_vms_state').on('mgr_vms').column('state').execute();
  await db.schema.createIndex('mgr_vms_node').on('mgr_vms').column('node_id').execute();

  await db.schema
    .createTable('mgr_vm_events')
    .addColumn('vm_id', COLUMN.id, (c) => c.notNull().references('mgr_vms.id').onDelete('cascade'))
    .addColumn('seq', COLUMN.int, (c) => c.notNull())
    .addColumn('at', COLUMN.time, (c) => c.notNull())
    .addColumn('from_state', COLUMN.text)
    .addColumn('to_state', COLUMN.text, (c) => c.notNull())
    .addColumn('reason', COLUMN.text)
    .addPrimaryKeyConstraint('mgr_vm_events_pk', ['vm_id', 'seq'])
    .execute();
}

export const MANAGER_NAMESPACE = 'manager';

export const managerMigrations: Migrations = {
  '0001_manager_tables': { up },
};
