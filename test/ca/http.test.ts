// The CA's HTTP surface: malformed input of every kind is 4xx (never 5xx) and changes
// nothing; admin endpoints refuse a missing or wrong credential before reading anything;
// receipts long-poll and are woken by the commit; OpenAPI, health and readiness.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { request } from 'undici';
import { pinnedCaAgent } from '../../src/crypto/tls.js';
import { CaAdminClient } from '../../src/ca/client.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { generateToken } from '../../src/http/auth.js';
import { tempDir } from '../support/system.js';
import { startTestCa, type TestCa } from './support/ca.js';
import { SimNode } from './support/sim-node.js';

const KERNEL = sha256Digest('kernel image');

describe('ca http', () => {
  let ca: TestCa;
  let node: SimNode;
  let agent: ReturnType<typeof pinnedCaAgent>;
  const tmp = tempDir('tl-ca-http-');

  before(async () => {
    ca = await startTestCa({ databaseUrl: `sqlite:${tmp.path}/ca.db`, dir: join(tmp.path, 'ca') });
    node = await SimNode.create({ dir: join(tmp.path, 'node') });
    await ca.enroll(node);
    await ca.admin.addAllowlist({ name: 'kernel', kernel: KERNEL });
    agent = pinnedCaAgent({ ca: ca.material.root.certificate });
  });
  after(async () => {
    await agent.close();
    await node.dispose();
    await ca.dispose();
    tmp.dispose();
  });

  async function raw(method: 'GET' | 'POST' | 'DELETE', path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; json: { error?: { code: string } } & Record<string, unknown> }> {
    const res = await request(`${ca.url}${path}`, { method, dispatcher: agent, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers }, ...(body === undefined ? {} : { body }) });
    const text = await res.body.text();
    return { status: res.statusCode, json: text === '' ? {} : (JSON.parse(text) as { error?: { code: string } }) };
  }

  /** Everything a refused request must leave as it was. */
  async function counts(): Promise<{ receipts: number; nodes: number; tokens: number; allowlist: number; platforms: number }> {
    const db = ca.service.store.db;
    const n = async (t: 'ca_receipts' | 'ca_nodes' | 'ca_tokens' | 'ca_allowlist' | 'ca_platforms'): Promise<number> => Number((await db.selectFrom(t).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    return { receipts: await n('ca_receipts'), nodes: await n('ca_nodes'), tokens: await n('ca_tokens'), allowlist: await n('ca_allowlist'), platforms: await n('ca_platforms') };
  }

  it('fuzzed bodies for every POST endpoint: always 4xx, an error body with a code, nothing changed', async () => {
    const before = await counts();
    const good = await node.evidence();
    const json = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string(),
      // mutations of a real evidence document
      fc.record({ path: fc.constantFrom('claims', 'quote', 'eventLog', 'claims.nonce', 'claims.kernel', 'quote.attest', 'quote.pcrs', 'claims.time'), value: fc.jsonValue() }).map(({ path, value }) => {
        const doc = structuredClone(good) as unknown as Record<string, Record<string, unknown>>;
        const [a, b] = path.split('.') as [string, string | undefined];
        if (b === undefined) doc[a] = value as never;
        else (doc[a] as Record<string, unknown>)[b] = value;
        return JSON.stringify(doc);
      }),
    );
    const paths = ['/v1/evidence', '/v1/registrations', `/v1/registrations/${'A'.repeat(22)}/answer`];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), json, async (path, body) => {
        const r = await raw('POST', path, body);
        assert.ok(r.status >= 400 && r.status < 500, `${path} ${body.slice(0, 120)} → ${r.status}`);
        assert.equal(typeof r.json.error?.code, 'string');
      }),
      { numRuns: 150 },
    );
    const afterCounts = await counts();
    // Evidence whose claims parse is receipted as contraindicated; nothing else may change.
    assert.deepEqual({ ...afterCounts, receipts: 0 }, { ...before, receipts: 0 });
    const { decisions } = await ca.admin.decisions({ limit: 1000 });
    assert.ok(decisions.every((d) => d.outcome !== 'affirming' || d.nonce === undefined || d.nonce !== good.claims.nonce));
  });

  it('wrong content types, oversized bodies, bad paths and queries are 4xx', async () => {
    assert.equal((await raw('POST', '/v1/evidence', 'x', { 'content-type': 'text/plain' })).status, 415);
    const big = await raw('POST', '/v1/evidence', JSON.stringify({ pad: 'x'.repeat(1_100_000) }));
    assert.deepEqual([big.status, big.json.error?.code], [413, 'BODY_TOO_LARGE']);
    const bigAdmin = await raw('POST', '/v1/admin/tokens', JSON.stringify({ pad: 'x'.repeat(1_100_000) }), { authorization: `Bearer ${ca.adminToken}` });
    assert.equal(bigAdmin.status, 413);
    for (const path of ['/v1/receipts/not-a-nonce', `/v1/receipts/${newNonce()}?wait=61`, `/v1/receipts/${newNonce()}?wait=-1`, `/v1/receipts/${newNonce()}?wait=abc`, `/v1/receipts/${newNonce()}?other=1`]) {
      const r = await raw('GET', path);
      assert.deepEqual([r.status, r.json.error?.code], [400, 'MALFORMED_REQUEST'], path);
    }
    assert.equal((await raw('GET', '/v1/nothing-here')).status, 404);
    assert.equal((await raw('POST', '/v1/registrations/short/answer', '{}')).status, 400);
  });

  it('admin endpoints: no token → 401, a wrong token or an enrollment token → 403, and nothing changes', async () => {
    const before = await counts();
    const { token: enrollment } = await ca.admin.createToken();
    const beforeWithToken = { ...before, tokens: before.tokens + 1 };
    const attempts: Array<[('GET' | 'POST' | 'DELETE'), string, string | undefined]> = [
      ['POST', '/v1/admin/tokens', '{}'],
      ['GET', '/v1/admin/tokens', undefined],
      ['POST', '/v1/admin/allowlist', JSON.stringify({ name: 'evil', kernel: sha256Digest('evil') })],
      ['POST', '/v1/admin/allowlist/kernel/revoke', undefined],
      ['POST', '/v1/admin/platforms', JSON.stringify({ name: 'evil', hypervisor: sha256Digest('h'), minidomain: sha256Digest('m') })],
      ['DELETE', '/v1/admin/platforms/platform-node-1', undefined],
      ['GET', '/v1/admin/nodes', undefined],
      ['POST', `/v1/admin/nodes/${node.nodeId}/revoke`, '{}'],
      ['GET', '/v1/admin/decisions', undefined],
    ];
    for (const [method, path, body] of attempts) {
      const none = await raw(method, path, body);
      assert.deepEqual([none.status, none.json.error?.code], [401, 'UNAUTHENTICATED'], `${method} ${path}`);
      for (const token of [generateToken('adm'), enrollment, `${ca.adminToken}x`]) {
        const wrong = await raw(method, path, body, { authorization: `Bearer ${token}` });
        assert.deepEqual([wrong.status, wrong.json.error?.code], [403, 'FORBIDDEN'], `${method} ${path}`);
      }
      const malformed = await raw(method, path, body, { authorization: `Basic ${Buffer.from(`admin:${ca.adminToken}`).toString('base64')}` });
      assert.equal(malformed.status, 401);
    }
    assert.deepEqual(await counts(), beforeWithToken);
    assert.equal((await ca.admin.node(node.nodeId)).status, 'active');
    assert.equal((await ca.admin.listAllowlist()).find((e) => e.name === 'kernel')?.revokedAt, undefined);
    // the right token works through the same client type
    const admin = new CaAdminClient({ url: ca.url, root: ca.material.root.certificate, token: ca.adminToken });
    assert.ok((await admin.listNodes()).length >= 1);
    await admin.close();
  });

  it('admin input is validated: bad digests, names, times, duplicates', async () => {
    const bad = [
      { name: 'x', kernel: 'sha256:XYZ' },
      { name: '../etc', kernel: KERNEL },
      { name: 'x', kernel: KERNEL, expiresAt: 'tomorrow' },
      { name: 'x', kernel: KERNEL, extra: 1 },
    ];
    for (const body of bad) await assert.rejects(ca.admin.http.call('POST', '/v1/admin/allowlist', { body }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    await assert.rejects(ca.admin.addAllowlist({ name: 'kernel', kernel: KERNEL }), (e) => isTrustlaunchError(e, 'CONFLICT'));
    await assert.rejects(ca.admin.addPlatform({ name: 'p', hypervisor: KERNEL, minidomain: KERNEL, pcrs: { '7': '00'.repeat(32) } }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    await assert.rejects(ca.admin.revokeAllowlist('no-such-entry'), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    await assert.rejects(ca.admin.removePlatform('no-such-platform'), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    await assert.rejects(ca.admin.revokeNode('no-such-node'), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    await assert.rejects(ca.admin.decisions({ cursor: 'garbage' }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    await assert.rejects(ca.admin.createToken(5), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
  });

  it('GET /v1/receipts/{nonce}?wait=S long-polls: woken by the commit, 404 NOT_FOUND after the wait', async () => {
    const evidence = await node.evidence();
    const started = Date.now();
    const waiting = ca.client.receipt(evidence.claims.nonce, 20);
    await new Promise((r) => setTimeout(r, 300));
    const posted = await ca.client.evidence(evidence);
    const got = await waiting;
    assert.equal(got.receipt, posted.receipt);
    assert.ok(Date.now() - started < 5_000, 'woken by the notification, not by the end of the wait');
    const t0 = Date.now();
    await assert.rejects(ca.client.receipt(newNonce(), 1), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    const waited = Date.now() - t0;
    assert.ok(waited >= 900 && waited < 4_000, `waited ${waited} ms`);
    await assert.rejects(ca.client.receipt(newNonce()), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
  });

  it('GET /v1/keys is the identity document whose fingerprint init printed; OpenAPI lists every endpoint; health and readiness', async () => {
    const keys = await ca.client.keys();
    assert.deepEqual(keys, ca.material.identity);
    const openapi = (await raw('GET', '/openapi.json')).json as { paths: Record<string, unknown> };
    for (const p of ['/v1/keys', '/v1/registrations', '/v1/registrations/{id}/answer', '/v1/evidence', '/v1/receipts/{nonce}', '/v1/admin/tokens', '/v1/admin/allowlist', '/v1/admin/allowlist/{name}/revoke', '/v1/admin/platforms', '/v1/admin/platforms/{name}', '/v1/admin/nodes', '/v1/admin/nodes/{id}', '/v1/admin/nodes/{id}/revoke', '/v1/admin/decisions']) {
      assert.ok(p in openapi.paths, `OpenAPI lacks ${p}`);
    }
    assert.deepEqual((await raw('GET', '/healthz')).json, { status: 'ok' });
    assert.deepEqual((await raw('GET', '/readyz')).json, { status: 'ready' });
  });
});
