// The manager's HTTPS API on both databases: authentication, admin-only endpoints,
// isolation between users (another user's VM is 404, exactly like a missing one), and
// bad input answered 4xx — never 5xx — with nothing changed.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { z } from 'zod';
import type { JsonClient } from '../../src/http/client.js';
import { insertVm, transition, getVm } from '../../src/manager/vms.js';
import { findUser } from '../../src/manager/users.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { IdSchema } from '../../src/protocol/messages.js';
import { isTrustlaunchError, type ErrorCode } from '../../src/protocol/errors.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { forEachDatabase } from '../support/databases.js';
import { startTestManager, type TestManager } from './support.js';

/** What POST /v1/users accepts (src/manager/http/users-routes.ts). */
const AddUserBody = z.strictObject({ name: IdSchema, role: z.enum(['admin', 'user']).optional() });

async function refusal(p: Promise<unknown>): Promise<{ code: ErrorCode; message: string; status: number }> {
  try {
    await p;
  } catch (e) {
    if (isTrustlaunchError(e)) return { code: e.code, message: e.message, status: e.status };
    throw e;
  }
  throw new Error('expected a refusal');
}

/** Raw HTTPS through the pinned client's dispatcher is not exposed; fetch with the CA would need an agent, so use the client. */
async function status(client: JsonClient, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<number> {
  try {
    await client.call(method, path, body === undefined ? {} : { body });
    return 200;
  } catch (e) {
    if (isTrustlaunchError(e)) return e.status;
    throw e;
  }
}

/** A VM record for `userName` in `state`, as a launch would leave it (no node needed for the API's view). */
async function seedVm(m: TestManager, userName: string, name: string): Promise<string> {
  const db = m.running.service.db;
  const user = await findUser(db, userName);
  assert.ok(user !== undefined);
  const vm = await insertVm(db, { userId: user.id, name, imageRef: 'guest', imageDigest: sha256Digest('guest'), imageKind: 'raw', nonce: newNonce(), memoryMiB: 256 });
  await transition(db, vm.id, { from: 'requested', to: 'scheduled', nodeId: 'node-x' });
  await transition(db, vm.id, { from: 'scheduled', to: 'booting' });
  await transition(db, vm.id, { from: 'booting', to: 'running' });
  return vm.id;
}

forEachDatabase('manager API', (open) => {
  const start = async (): Promise<TestManager> => startTestManager({ databaseUrl: await open.url() });

  it('requires a valid bearer token on every /v1 route except node join', async () => {
    const m = await start();
    try {
      const anonymous = m.client();
      const forged = m.client('tlusr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
      for (const c of [anonymous, forged]) {
        for (const [method, path, body] of [
          ['GET', '/v1/whoami'],
          ['GET', '/v1/vms'],
          ['POST', '/v1/vms', { image: 'x', nonce: newNonce() }],
          ['GET', '/v1/vms/vm-aaaaaaaaaaaaaaaa'],
          ['GET', '/v1/images'],
          ['GET', '/v1/users'],
          ['GET', '/v1/nodes'],
        ] as const) {
          assert.equal(await status(c, method, path, body), 401, `${method} ${path}`);
        }
      }
      // Join is authorised by its token in the body: without one it is a malformed request, never a 5xx.
      assert.equal(await status(anonymous, 'POST', '/v1/nodes/join', {}), 400);
      assert.deepEqual(await m.admin.call('GET', '/v1/whoami').then((u) => (u as { name: string; role: string }).role), 'admin');
    } finally {
      await m.dispose();
    }
  });

  it('refuses users (403) on admin endpoints, changing nothing', async () => {
    const m = await start();
    try {
      const { client: alice } = await m.addUser('alice');
      const blob = sha256Digest('b');
      for (const [method, path, body] of [
        ['GET', '/v1/users'],
        ['POST', '/v1/users', { name: 'mallory', role: 'admin' }],
        ['DELETE', '/v1/users/admin'],
        ['GET', `/v1/blobs/${blob}`],
        ['POST', '/v1/images', { name: 'evil', raw: blob }],
        ['DELETE', '/v1/images/guest'],
        ['POST', '/v1/nodes/tokens', {}],
        ['GET', '/v1/nodes'],
        ['GET', '/v1/nodes/node-1'],
        ['DELETE', '/v1/nodes/node-1'],
      ] as const) {
        const r = await refusal(alice.call(method, path, body === undefined ? {} : { body }));
        assert.equal(r.code, 'FORBIDDEN', `${method} ${path}`);
      }
      const raw = await refusal(alice.call('PUT', `/v1/blobs/${sha256Digest('abc')}`, { raw: { body: Buffer.from('abc'), contentType: 'application/octet-stream', length: 3 } }));
      assert.equal(raw.code, 'FORBIDDEN');
      const users = await m.admin.call<{ users: Array<{ name: string }> }>('GET', '/v1/users');
      assert.deepEqual(users.users.map((u) => u.name), ['admin', 'alice']);
      assert.equal(await m.running.service.images.blobSize(sha256Digest('abc')), undefined);
    } finally {
      await m.dispose();
    }
  });

  it("isolates users: B cannot see, stop or delete A's VMs — 404 exactly as for a VM that does not exist", async () => {
    const m = await start();
    try {
      const { client: a } = await m.addUser('alice');
      const { client: b } = await m.addUser('bob');
      const id = await seedVm(m, 'alice', 'web');
      const seen = await a.call<{ vmId: string; name: string; state: string; history: unknown[] }>('GET', `/v1/vms/${id}`);
      assert.equal(seen.name, 'web');
      assert.equal(seen.state, 'running');
      assert.equal(seen.history.length, 4);
      assert.equal((await a.call<{ vmId: string }>('GET', '/v1/vms/web')).vmId, id, 'by name too');
      assert.deepEqual((await b.call<{ vms: unknown[] }>('GET', '/v1/vms')).vms, []);
      const missing = 'vm-aaaaaaaaaaaaaaaa';
      for (const [method, suffix] of [
        ['GET', ''],
        ['POST', '/stop'],
        ['DELETE', ''],
      ] as const) {
        const theirs = await refusal(b.call(method, `/v1/vms/${id}${suffix}`));
        const none = await refusal(b.call(method, `/v1/vms/${missing}${suffix}`));
        assert.equal(theirs.code, 'NOT_FOUND', `${method} ${suffix}`);
        assert.equal(theirs.status, none.status);
        assert.equal(theirs.message.replace(id, 'X'), none.message.replace(missing, 'X'), 'the answers differ only in the id asked for');
        assert.equal((await refusal(b.call(method, `/v1/vms/web${suffix}`))).code, 'NOT_FOUND', 'by name either');
      }
      const after = await getVm(m.running.service.db, id);
      assert.equal(after?.state, 'running', "A's VM is untouched");
      assert.equal(after?.version, 4);
      // Bob may use the same name for his own VM.
      await seedVm(m, 'bob', 'web');
      assert.equal((await a.call<{ vmId: string }>('GET', '/v1/vms/web')).vmId, id);
    } finally {
      await m.dispose();
    }
  });

  it('refuses a VM when no node can take it (503, nothing kept), an unknown image (404), a reserved name (400)', async () => {
    const m = await start();
    try {
      const { client: a } = await m.addUser('alice');
      const bytes = Buffer.from('a guest image');
      const digest = sha256Digest(bytes);
      await m.admin.call('PUT', `/v1/blobs/${digest}`, { raw: { body: bytes, contentType: 'application/octet-stream', length: bytes.length } });
      await m.admin.call('POST', '/v1/images', { body: { name: 'guest', raw: digest } });
      assert.equal((await refusal(a.call('POST', '/v1/vms', { body: { image: 'guest', nonce: newNonce(), name: 'one' } }))).code, 'NO_NODE_AVAILABLE');
      assert.equal((await refusal(a.call('POST', '/v1/vms', { body: { image: digest, nonce: newNonce() } }))).code, 'NO_NODE_AVAILABLE');
      assert.equal((await refusal(a.call('POST', '/v1/vms', { body: { image: 'other', nonce: newNonce() } }))).code, 'NOT_FOUND');
      assert.equal((await refusal(a.call('POST', '/v1/vms', { body: { image: 'guest', nonce: newNonce(), name: 'vm-abcdefghijklmnop' } }))).code, 'MALFORMED_REQUEST');
      assert.deepEqual((await a.call<{ vms: unknown[] }>('GET', '/v1/vms')).vms, []);
      // Users list images (to choose one) but cannot change them.
      assert.deepEqual((await a.call<{ images: Array<{ name: string }> }>('GET', '/v1/images')).images.map((i) => i.name), ['guest']);
    } finally {
      await m.dispose();
    }
  });

  it('answers arbitrary bad bodies and ids with 4xx, never 5xx, and changes nothing (property)', async () => {
    const m = await start();
    try {
      const { client: a } = await m.addUser('alice');
      const json = fc.oneof(
        fc.jsonValue({ maxDepth: 3 }),
        fc.record({ image: fc.string({ maxLength: 200 }), nonce: fc.string({ maxLength: 60 }), name: fc.string({ maxLength: 70 }), sshPublicKey: fc.string({ maxLength: 80 }) }, { requiredKeys: [] }),
        fc.record({ name: fc.string({ maxLength: 70 }), raw: fc.string({ maxLength: 80 }), bundle: fc.jsonValue({ maxDepth: 2 }), replace: fc.jsonValue({ maxDepth: 1 }) }, { requiredKeys: [] }),
        fc.record({ token: fc.string({ maxLength: 300 }), nodeId: fc.string({ maxLength: 70 }), endpoint: fc.string({ maxLength: 100 }), dom0CaCertificate: fc.string({ maxLength: 100 }), dom0Token: fc.string({ maxLength: 100 }) }, { requiredKeys: [] }),
      );
      const target = fc.constantFrom(
        { client: a, method: 'POST' as const, path: '/v1/vms' },
        { client: m.admin, method: 'POST' as const, path: '/v1/images' },
        { client: m.admin, method: 'POST' as const, path: '/v1/users' },
        { client: m.admin, method: 'POST' as const, path: '/v1/nodes/tokens' },
        { client: a, method: 'POST' as const, path: '/v1/nodes/join' },
      );
      await fc.assert(
        fc.asyncProperty(target, json, async (t, body) => {
          // A body that is a valid add-user request (fast-check does draw `{"name":"a"}`) is not bad input.
          fc.pre(!(t.path === '/v1/users' && AddUserBody.safeParse(body).success));
          const s = await status(t.client, t.method, t.path, body);
          // POST /v1/nodes/tokens takes an optional ttl: a few bodies are valid and create a token.
          if (t.path === '/v1/nodes/tokens' && s === 200) return;
          assert.ok(s >= 400 && s < 500, `${t.method} ${t.path} ${JSON.stringify(body)} → ${s}`);
        }),
        { numRuns: 300 },
      );
      await fc.assert(
        fc.asyncProperty(fc.string({ minLength: 1, maxLength: 80 }), fc.constantFrom('GET', 'POST', 'DELETE'), async (id, method) => {
          const path = method === 'POST' ? `/v1/vms/${encodeURIComponent(id)}/stop` : `/v1/vms/${encodeURIComponent(id)}`;
          const s = await status(a, method, path);
          assert.ok(s >= 400 && s < 500, `${method} ${path} → ${s}`);
        }),
        { numRuns: 200 },
      );
      const db = m.running.service.db;
      assert.equal((await db.selectFrom('mgr_vms').select('id').execute()).length, 0);
      assert.equal((await db.selectFrom('mgr_images').select('name').execute()).length, 0);
      assert.equal((await db.selectFrom('mgr_nodes').select('id').execute()).length, 0);
      assert.deepEqual((await db.selectFrom('mgr_users').select('name').orderBy('name').execute()).map((u) => u.name), ['admin', 'alice']);
    } finally {
      await m.dispose();
    }
  });

  it('uploads blobs checked against their digest, names images, and collects blobs with the last name', async () => {
    const m = await start();
    try {
      const bytes = Buffer.alloc(300_000, 7);
      const digest = sha256Digest(bytes);
      const put = (body: Buffer, d = digest) => m.admin.call('PUT', `/v1/blobs/${d}`, { raw: { body, contentType: 'application/octet-stream', length: body.length } });
      assert.equal((await refusal(put(Buffer.alloc(300_000, 8)))).code, 'BLOB_DIGEST_MISMATCH');
      assert.equal((await refusal(m.admin.call('GET', `/v1/blobs/${digest}`))).code, 'NOT_FOUND');
      assert.deepEqual(await put(bytes), { digest, size: bytes.length });
      assert.deepEqual(await m.admin.call('GET', `/v1/blobs/${digest}`), { digest, size: bytes.length });
      const wrongType = await refusal(m.admin.call('PUT', `/v1/blobs/${digest}`, { raw: { body: bytes, contentType: 'text/plain', length: bytes.length } }));
      assert.ok(wrongType.status >= 400 && wrongType.status < 500);
      const image = await m.admin.call<{ digest: string; parts: unknown[] }>('POST', '/v1/images', { body: { name: 'guest', raw: digest } });
      assert.equal(image.digest, digest);
      await m.admin.call('DELETE', '/v1/images/guest');
      assert.equal((await refusal(m.admin.call('GET', `/v1/blobs/${digest}`))).code, 'NOT_FOUND', 'collected with its last name');
    } finally {
      await m.dispose();
    }
  });

  it("removing a user removes its token and VM records", async () => {
    const m = await start();
    try {
      const { client: a } = await m.addUser('alice');
      const id = await seedVm(m, 'alice', 'web');
      await m.admin.call('DELETE', '/v1/users/alice');
      assert.equal((await refusal(a.call('GET', '/v1/vms'))).code, 'UNAUTHENTICATED');
      assert.equal(await getVm(m.running.service.db, id), undefined);
    } finally {
      await m.dispose();
    }
  });

  it('serves an OpenAPI document naming every route', async () => {
    const m = await start();
    try {
      const doc = await m.client().call<{ paths: Record<string, unknown> }>('GET', '/openapi.json');
      for (const p of ['/v1/vms', '/v1/vms/{id}', '/v1/vms/{id}/stop', '/v1/images', '/v1/blobs/{digest}', '/v1/users', '/v1/nodes', '/v1/nodes/join', '/v1/nodes/tokens', '/v1/whoami']) {
        assert.ok(p in doc.paths, p);
      }
    } finally {
      await m.dispose();
    }
  });
});
