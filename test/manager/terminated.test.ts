// The manager when PostgreSQL ends its sessions (pg_terminate_backend, as a server restart
// or an administrator would): while API calls and the node monitor run, every session of
// the manager is terminated, again and again; the process survives (an uncaught error would
// fail this test), and afterwards every call succeeds on fresh sessions.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import pg from 'pg';
import { forEachDatabase } from '../support/databases.js';
import { startTestManager } from './support.js';

const ROUNDS = 25;

forEachDatabase(
  'manager with its PostgreSQL sessions terminated',
  (open) => {
    it('survives every session being terminated mid-work and keeps serving', async () => {
      const url = await open.url();
      const m = await startTestManager({ databaseUrl: url });
      const admin = new pg.Client({ connectionString: url, application_name: 'trustlaunch-test-terminator' });
      admin.on('error', () => undefined); // only this test's own session; its queries fail instead
      await admin.connect();
      try {
        const ended: number[] = [];
        let failedCalls = 0;
        for (let round = 0; round < ROUNDS; round++) {
          // Transactions (adding users) and reads in flight while the sessions are ended.
          const calls = Promise.allSettled([
            m.addUser(`user-${round}`),
            m.admin.call('GET', '/v1/users'),
            m.admin.call('GET', '/v1/nodes'),
          ]);
          await new Promise((r) => setTimeout(r, round % 5));
          const { rows } = await admin.query<{ pid: number; ended: boolean }>(
            "select pid, pg_terminate_backend(pid) as ended from pg_stat_activity where datname = current_database() and application_name like 'trustlaunch-manager%'",
          );
          for (const r of rows) if (r.ended) ended.push(r.pid);
          failedCalls += (await calls).filter((r) => r.status === 'rejected').length;
        }
        assert.ok(ended.length >= ROUNDS, `sessions terminated: ${ended.length}`);
        // Calls cut by a termination may fail; not every one of them.
        assert.ok(failedCalls < ROUNDS * 3, `failed calls: ${failedCalls}`);

        // pg_terminate_backend only signals: wait until those sessions are gone and their end
        // has reached the manager, so no call below is cut by this test's own terminations.
        let left = ended.length;
        for (let i = 0; i < 500 && left > 0; i++) {
          await new Promise((r) => setTimeout(r, 10));
          const { rows } = await admin.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where pid = any($1::int[])', [ended]);
          left = rows[0]?.n ?? 0;
        }
        assert.equal(left, 0, 'terminated sessions still there');
        await new Promise((r) => setTimeout(r, 100));
        // Afterwards: a write, a read that sees it, and readiness, each on a fresh session.
        const { client } = await m.addUser('after');
        const { users } = await m.admin.call<{ users: Array<{ name: string }> }>('GET', '/v1/users');
        assert.ok(users.some((u) => u.name === 'after'));
        await client.call('GET', '/v1/vms'); // the new user's token works: its row was committed
        await m.admin.call('GET', '/readyz');
        // A restart on the same database still works.
        await m.restart();
        const again = await m.admin.call<{ users: Array<{ name: string }> }>('GET', '/v1/users');
        assert.ok(again.users.some((u) => u.name === 'after'));
      } finally {
        await admin.end().catch(() => undefined);
        await m.dispose();
      }
    });
  },
  ['postgres'],
);
