// Scratch PostgreSQL databases for tests and benchmarks: `tl_<random>` on the server a base
// URL names, created through an admin session and dropped WITH (FORCE) afterwards.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { redactUrl } from '../../src/store/index.js';

/** A session on `url` that survives the server ending it (its next query fails instead). */
export async function connectPostgres(url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  // A session the server ends while idle emits 'error'; unheard, that ends the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    throw new Error(`cannot reach PostgreSQL at ${redactUrl(url)}: ${(e as Error).message}`, { cause: e });
  }
  return client;
}

/** Creates a new database through `admin` (a session on `base`); returns its name and URL. */
export async function createDatabase(admin: pg.Client, base: string, prefix = 'tl_'): Promise<{ name: string; url: string }> {
  const name = `${prefix}${randomBytes(8).toString('hex')}`;
  await admin.query(`create database ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { name, url: url.toString() };
}

/** A database of its own on `base`, with its own admin session; `drop()` removes both. */
export async function scratchDatabase(base: string, o: { prefix?: string; applicationName: string }): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = await connectPostgres(base, o.applicationName);
  try {
    const { name, url } = await createDatabase(admin, base, o.prefix);
    return {
      url,
      // WITH (FORCE) terminates sessions still connected.
      drop: async () => {
        try {
          await admin.query(`drop database if exists ${name} with (force)`);
        } finally {
          await admin.end();
        }
      },
    };
  } catch (e) {
    await admin.end();
    throw e;
  }
}
