// dom0's HTTPS API as the manager uses it — through the manager's own client
// (src/manager/dom0-client.ts) as an oracle of the wire format — and its refusals: no or
// a wrong token, an upload that does not hash to its digest or is too large, unknown
// images, duplicate ids, capacity. Refused requests store nothing and start nothing.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { Dom0Client } from '../../../src/manager/dom0-client.js';
import { readSecretFile } from '../../../src/crypto/files.js';
import { JsonClient } from '../../../src/http/client.js';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { newNonce } from '../../../src/protocol/nonce.js';
import { toBase64url } from '../../../src/protocol/base64url.js';
import { readFile } from 'node:fs/promises';
import { defaultGuestImage } from '../../../src/node/vm/process/index.js';
import { startCluster, waitForAttestation, type Cluster } from '../support/cluster.js';
import { portIsFree } from '../vm/support.js';

void describe('dom0 API', () => {
  let c: Cluster;
  let manager: Dom0Client;
  before(async () => {
    c = await startCluster({ config: (cfg) => ((cfg['vm'] as Record<string, unknown>)['maxImageMiB'] = 1) });
    await c.waitForLog('registered');
    manager = new Dom0Client({ id: 'node-1', endpoint: c.node.url, dom0Ca: await readFile(c.init.paths.tlsCa, 'utf8'), dom0Token: (await readSecretFile(c.init.paths.dom0Token)).toString('utf8').trim() });
  });
  after(async () => {
    await manager.close();
    await c.dispose();
  });

  void it('needs the manager\'s token on every /v1 route', async () => {
    const ca = await readFile(c.init.paths.tlsCa, 'utf8');
    for (const token of [undefined, 'tlnode_wrongwrongwrongwrongwrongwrongwrongwrongwro']) {
      const client = new JsonClient({ baseUrl: c.node.url, ca, ...(token === undefined ? {} : { token }) });
      await assert.rejects(client.call('GET', '/v1/node'), (e) => isTrustlaunchError(e, 'UNAUTHENTICATED'));
      await assert.rejects(client.call('POST', '/v1/vms', { body: {} }), (e) => isTrustlaunchError(e, 'UNAUTHENTICATED'));
      assert.deepEqual(await client.call('GET', '/healthz'), { status: 'ok' });
      // No spelling of a path gets around the check (it belongs to the routes, not to a URL prefix).
      for (const path of ['/%76%31/node', '/%76%31/vms', '/v1/./node', '/v1/vms/../node']) {
        await assert.rejects(client.call('GET', path), (e) => isTrustlaunchError(e, 'UNAUTHENTICATED'), path);
      }
      await client.close();
    }
  });

  void it('stores an image only when it hashes to its digest and fits the bound', async () => {
    const good = Buffer.from('#!/usr/bin/env node\n// tiny\n');
    const wrong = sha256Digest('something else');
    await assert.rejects(manager.putImage(wrong, Readable.from([good]), good.length), (e) => isTrustlaunchError(e, 'BLOB_DIGEST_MISMATCH'));
    const big = Buffer.alloc(1024 * 1024 + 1);
    await assert.rejects(manager.putImage(sha256Digest(big), Readable.from([big]), big.length), (e) => isTrustlaunchError(e, 'BODY_TOO_LARGE'));
    const stored = readdirSync(join(c.init.paths.images, 'sha256'));
    assert.equal(stored.includes(wrong.slice(7)), false);
    assert.deepEqual(readdirSync(join(c.init.paths.images, 'tmp')), []);
    await manager.putImage(sha256Digest(good), Readable.from([good]), good.length);
    assert.ok(readdirSync(join(c.init.paths.images, 'sha256')).includes(sha256Digest(good).slice(7)));
  });

  void it('creates, shows, lists, stops and deletes a VM in the manager\'s format', async () => {
    const image = defaultGuestImage();
    const digest = sha256Digest(image);
    await manager.putImage(digest, Readable.from([image]), image.length);
    const created = await manager.createVm({ vmId: 'vm-api', image: digest, nonce: newNonce(), hostname: 'vm-api.test', authorizedKey: c.key.publicKey, memoryMiB: 128 });
    assert.equal(created.kernel, digest);
    const attested = await waitForAttestation(c, 'vm-api');
    assert.equal(attested.attestation.state, 'attested');
    const seen = await manager.vm('vm-api');
    assert.equal(seen?.attestation, 'attested');
    assert.equal(seen?.ssh?.host, '127.0.0.1');
    assert.deepEqual([...(await manager.vms()).keys()], ['vm-api']);
    const node = await manager.node();
    assert.deepEqual({ id: node.id, vms: node.vmCount, used: node.memoryUsedMiB, total: node.memoryTotalMiB, health: node.health, device: node.deviceKind }, { id: 'node-1', vms: 1, used: 128, total: 2048, health: 'ok', device: 'sim' });
    const port = seen?.ssh?.port;
    assert.equal(await manager.stopVm('vm-api'), true);
    assert.equal((await manager.vm('vm-api'))?.state, 'stopped');
    assert.equal(await portIsFree(port), true, 'the stopped VM still listens');
    assert.equal((await manager.node()).vmCount, 0);
    assert.equal(await manager.deleteVm('vm-api'), true);
    assert.equal(await manager.vm('vm-api'), undefined);
    assert.equal(await manager.deleteVm('vm-api'), false);
  });

  void it('takes a small image inline, and refuses bad creations without starting anything', async () => {
    const image = defaultGuestImage();
    const base = { nonce: newNonce(), hostname: 'vm-x.test', authorizedKey: c.key.publicKey, memoryMiB: 64 };
    const before = c.node.hypervisor.dom0.vms().length;
    await assert.rejects(c.dom0.call('POST', '/v1/vms', { body: { ...base, vmId: 'vm-x', image: sha256Digest('unknown') } }), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    await assert.rejects(c.dom0.call('POST', '/v1/vms', { body: { ...base, vmId: 'vm-x', image: sha256Digest(image), imageData: toBase64url(image) } }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    await assert.rejects(c.dom0.call('POST', '/v1/vms', { body: { ...base, vmId: 'vm-x', imageData: toBase64url(image), authorizedKey: undefined } }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    await assert.rejects(c.dom0.call('POST', '/v1/vms', { body: { ...base, vmId: 'vm-x', imageData: toBase64url(image), memoryMiB: 4096 } }), (e) => isTrustlaunchError(e, 'CAPACITY_EXCEEDED'));
    await assert.rejects(c.dom0.call('POST', '/v1/vms', { body: { ...base, vmId: 'VM X', imageData: toBase64url(image) } }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    assert.equal(c.node.hypervisor.dom0.vms().length, before, 'a refused creation built a domain');
    const inline = await c.dom0.call<{ vmId: string; kernel: string }>('POST', '/v1/vms', { body: { ...base, vmId: 'vm-inline', imageData: toBase64url(image) } });
    assert.equal(inline.kernel, sha256Digest(image));
    await assert.rejects(c.dom0.call('POST', '/v1/vms', { body: { ...base, vmId: 'vm-inline', imageData: toBase64url(image) } }), (e) => isTrustlaunchError(e, 'CONFLICT'));
    assert.equal((await waitForAttestation(c, 'vm-inline')).attestation.state, 'attested');
    await c.dom0.call('DELETE', '/v1/vms/vm-inline');
  });
});
