import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import { defaultDatabaseUrl, parseDatabaseUrl, redactUrl } from '../../src/store/index.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';

describe('database URLs', () => {
  it('reads every accepted form', () => {
    assert.deepEqual(parseDatabaseUrl('sqlite:/var/lib/tl/ca.db'), { dialect: 'sqlite', path: '/var/lib/tl/ca.db' });
    assert.deepEqual(parseDatabaseUrl('sqlite:///var/lib/tl/ca.db'), { dialect: 'sqlite', path: '/var/lib/tl/ca.db' });
    assert.deepEqual(parseDatabaseUrl('sqlite:data/ca.db'), { dialect: 'sqlite', path: resolve('data/ca.db') });
    assert.deepEqual(parseDatabaseUrl('sqlite::memory:'), { dialect: 'sqlite', path: ':memory:' });
    assert.deepEqual(parseDatabaseUrl('/srv/ca.db'), { dialect: 'sqlite', path: '/srv/ca.db' });
    assert.deepEqual(parseDatabaseUrl('./ca.db'), { dialect: 'sqlite', path: resolve('ca.db') });
    const pgUrl = 'postgres://u:p@127.0.0.1:5432/ca';
    assert.deepEqual(parseDatabaseUrl(pgUrl), { dialect: 'postgres', connectionString: pgUrl });
    const pgUrl2 = 'postgresql://u@localhost/ca?sslmode=disable';
    assert.deepEqual(parseDatabaseUrl(pgUrl2), { dialect: 'postgres', connectionString: pgUrl2 });
  });

  it('refuses what it cannot open, with UNSUPPORTED', () => {
    for (const url of ['', '   ', 'mysql://u:p@host/db', 'sqlite://host/file.db', 'sqlite:']) {
      assert.throws(() => parseDatabaseUrl(url), (e: unknown) => isTrustlaunchError(e, 'UNSUPPORTED'), url);
    }
  });

  it('never prints a password', () => {
    const cases: Array<[string, string]> = [
      ['postgres://alice:s3cret@db.example:5432/ca', 'postgres://alice:***@db.example:5432/ca'],
      ['postgresql://alice:p@ss@word@127.0.0.1/ca', 'postgresql://alice:***@127.0.0.1/ca'],
      ['postgres://alice:pw@127.0.0.1/ca?application_name=x@y', 'postgres://alice:***@127.0.0.1/ca?application_name=x@y'],
      ['postgres://127.0.0.1/ca?user=alice&password=s3cret&sslmode=disable', 'postgres://127.0.0.1/ca?user=alice&password=***&sslmode=disable'],
      ['postgres://alice@127.0.0.1:5432/ca', 'postgres://alice@127.0.0.1:5432/ca'],
      ['postgres://127.0.0.1:5432/ca', 'postgres://127.0.0.1:5432/ca'],
      ['sqlite:/var/lib/tl/ca.db', 'sqlite:/var/lib/tl/ca.db'],
    ];
    for (const [url, expected] of cases) {
      assert.equal(redactUrl(url), expected);
      assert.ok(!redactUrl(url).includes('s3cret') && !redactUrl(url).includes('ss@word'));
    }
  });

  it('defaults to DATABASE_URL, else the given SQLite file', () => {
    assert.equal(defaultDatabaseUrl('/srv/ca.db', { DATABASE_URL: 'postgres://h/ca' }), 'postgres://h/ca');
    assert.equal(defaultDatabaseUrl('/srv/ca.db', {}), 'sqlite:/srv/ca.db');
    assert.equal(defaultDatabaseUrl('/srv/ca.db', { DATABASE_URL: '' }), 'sqlite:/srv/ca.db');
  });
});
