// A node joins the real manager (src/manager, in this process): `startNode({ join })`
// presents a one-time join token with dom0's endpoint, its TLS CA and the bearer token;
// the manager then reaches dom0 with them (pinned TLS, token) and records the node's
// health, capacity and device from dom0's GET /v1/node. A used join token cannot join again.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCertificate } from '../../src/crypto/x509.js';
import { JsonClient } from '../../src/http/client.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { initManager } from '../../src/manager/init.js';
import { startManager, type RunningManager } from '../../src/manager/server.js';
import { startCluster, type Cluster } from './support/cluster.js';
import { tempDir } from '../support/system.js';

void describe('node joins the manager', () => {
  let c: Cluster;
  let manager: RunningManager;
  let admin: JsonClient;
  const dir = tempDir('tl-join-');
  before(async () => {
    c = await startCluster({ attestation: 'off', enroll: false });
    const made = await initManager({ dir: join(dir.path, 'manager') });
    manager = await startManager({ dir: join(dir.path, 'manager'), port: 0, overrides: { nodePollIntervalMs: 200 } });
    admin = new JsonClient({ baseUrl: manager.url, ca: manager.caCertificate, token: made.adminToken });
  });
  after(async () => {
    await admin.close();
    await manager.close();
    await c.dispose();
    dir.dispose();
  });

  void it('joins with a one-time token; the manager reaches dom0 and sees its health and capacity', async () => {
    const { token } = await admin.call<{ token: string }>('POST', '/v1/nodes/tokens', { body: {} });
    await c.stopNode();
    const joinSpec = { managerUrl: manager.url, managerCa: parseCertificate(manager.caCertificate), joinToken: token };
    await c.restartNode({ join: joinSpec });
    assert.ok(c.logs.some((l) => l['event'] === 'joined'));
    const deadline = Date.now() + 20_000;
    let node: { id: string; endpoint: string; health: string | null; deviceKind: string | null; memoryTotalMiB: number } | undefined;
    while (Date.now() < deadline) {
      node = (await admin.call<{ nodes: NonNullable<typeof node>[] }>('GET', '/v1/nodes')).nodes[0];
      if (node?.health !== null && node?.health !== undefined) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(node?.id, 'node-1');
    assert.equal(node?.endpoint, c.node.url);
    assert.equal(node?.health, 'ok');
    assert.equal(node?.deviceKind, 'sim');
    assert.equal(node?.memoryTotalMiB, 2048);
    // The token was one use.
    await c.stopNode();
    await assert.rejects(c.restartNode({ join: joinSpec }), (e) => isTrustlaunchError(e, 'TOKEN_INVALID'));
    await c.restartNode();
  });
});
