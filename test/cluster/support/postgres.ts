// A fresh PostgreSQL database for one test file (TRUSTLAUNCH_TEST_PG; the test fails without it).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { requirePostgresUrl } from '../../support/system.js';

export async function freshPostgres(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = requirePostgresUrl();
  const admin = new pg.Client({ connectionString: base, application_name: 'trustlaunch-test-cluster' });
  // A session the server ends while idle emits 'error'; unheard, that ends the test process.
  admin.on('error', () => undefined); // the next query fails instead
  await admin.connect();
  const name = `tl_${randomBytes(8).toString('hex')}`;
  await admin.query(`create database ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      try {
        await admin.query(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end();
      }
    },
  };
}
