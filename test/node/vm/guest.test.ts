// The default process guest (guest/process/guest.mjs) on its own, with the test playing
// the hypervisor on fd 3: one host key, before anything else, never on the console;
// strict validation (every malformed or invalid line dropped, counted, changing nothing);
// a certificate before the config; clean exits on SIGTERM and when the channel closes.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { vmProcesses } from '../../../src/node/vm/process/index.js';
import { issueHostCertificate } from '../../../src/crypto/ssh-certificates.js';
import { formatSshPublicKey } from '../../../src/crypto/ssh-keys.js';
import { generateKeyPairSync } from 'node:crypto';
import { clientKey, portIsFree, ssh, type ClientKey } from './support.js';
import { leftovers, startGuest, type GuestHarness } from './guest-harness.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

void describe('process guest', () => {
  let key: ClientKey;
  let otherKey: ClientKey;
  const guests: GuestHarness[] = [];
  const start = (...args: Parameters<typeof startGuest>): GuestHarness => {
    const g = startGuest(...args);
    guests.push(g);
    return g;
  };
  before(async () => {
    key = await clientKey();
    otherKey = await clientKey();
  });
  after(async () => {
    for (const g of guests) await g.dispose();
    key.dispose();
    otherKey.dispose();
  });

  void it('sends one host key first, then applies only a valid config; every bad line is dropped and counted', async () => {
    const g = start();
    const hostKey = await g.waitFor('host-key');
    assert.equal(g.messages[0]?.['type'], 'host-key', 'the host key is the first message');
    assert.match(hostKey['key'] as string, /^ssh-ed25519 [A-Za-z0-9+/]+={0,2}$/, 'no comment');
    const port = await freePort();
    const good = { v: 1, type: 'config', hostname: 'vm-1.test', authorizedKeys: [key.publicKey], sshPort: port };
    const bad: (string | Buffer)[] = [
      'not json\n',
      '[1,2]\n',
      'null\n',
      `${JSON.stringify({ ...good, v: 2 })}\n`,
      `${JSON.stringify({ ...good, v: undefined })}\n`,
      `${JSON.stringify({ ...good, hostname: 'bad host' })}\n`,
      `${JSON.stringify({ ...good, hostname: 'x'.repeat(64) })}\n`,
      `${JSON.stringify({ ...good, sshPort: 0 })}\n`,
      `${JSON.stringify({ ...good, sshPort: 70000 })}\n`,
      `${JSON.stringify({ ...good, sshPort: String(port) })}\n`,
      `${JSON.stringify({ ...good, sshPort: port + 0.5 })}\n`,
      `${JSON.stringify({ ...good, authorizedKeys: [] })}\n`,
      `${JSON.stringify({ ...good, authorizedKeys: key.publicKey })}\n`,
      `${JSON.stringify({ ...good, authorizedKeys: [`${key.publicKey}\n${otherKey.publicKey}`] })}\n`,
      `${JSON.stringify({ ...good, authorizedKeys: [`command="id" ${otherKey.publicKey}`] })}\n`,
      `${JSON.stringify({ ...good, authorizedKeys: Array.from({ length: 17 }, () => key.publicKey) })}\n`,
      `${JSON.stringify({ ...good, authorizedKeys: [key.publicKey, 42] })}\n`,
      `${JSON.stringify({ ...good, pad: 'x'.repeat(17 * 1024) })}\n`, // over 16 KiB
      Buffer.concat([Buffer.from('{"v":1,"type":"config","hostname":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]), // not UTF-8
    ];
    for (const line of bad) g.write(line);
    g.send({ v: 1, type: 'something-new', x: 1 }); // unknown types are ignored, not counted
    await g.waitForConsole(new RegExp(`total ${bad.length}\\)`));
    assert.equal(g.messages.some((m) => m['type'] === 'ready'), false, 'nothing was applied');

    g.send(good);
    const ready = await g.waitFor('ready');
    assert.deepEqual(ready, { v: 1, type: 'ready', sshPort: port });
    g.send({ ...good, authorizedKeys: [otherKey.publicKey] }); // a second config is dropped
    await g.waitForConsole(/config already applied/);
    const logs = g.messages.filter((m) => m['type'] === 'log');
    assert.equal(logs.length, bad.length + 1, 'each drop is reported on the channel too');

    const knownHosts = `[127.0.0.1]:${port} ${hostKey['key'] as string}\n`;
    const ok = await ssh({ port, key, knownHosts, command: 'echo in' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'in');
    const refused = await ssh({ port, key: otherKey, knownHosts, command: 'echo in' });
    assert.equal(refused.status, 255, 'keys from dropped configs were never installed');
    assert.match(refused.stderr, /Permission denied/);
    assert.equal(g.messages.filter((m) => m['type'] === 'host-key').length, 1);
    assert.ok(!g.console().includes((hostKey['key'] as string).split(' ')[1] as string), 'the host key is not on the console');
    assert.ok(!g.console().includes('PRIVATE KEY'));
  });

  void it('installs a certificate that arrived before the config, then reports it after ready', async () => {
    const g = start();
    const hostKey = (await g.waitFor('host-key'))['key'] as string;
    const ca = generateKeyPairSync('ed25519');
    const now = Date.now();
    g.send({ v: 1, type: 'host-certificate', certificate: issueHostCertificate({ caPrivateKey: ca.privateKey, hostKey, principals: ['early.test'], keyId: 'early', validAfter: new Date(now - 60_000), validBefore: new Date(now + 3_600_000) }) });
    await g.waitForConsole(/host certificate installed/);
    const port = await freePort();
    g.send({ v: 1, type: 'config', hostname: 'early.test', authorizedKeys: [key.publicKey], sshPort: port });
    await g.waitFor('certificate-installed');
    const types = g.messages.map((m) => m['type']);
    assert.ok(types.indexOf('ready') < types.indexOf('certificate-installed'));
    const r = await ssh({ port, key, knownHosts: `@cert-authority early.test ${formatSshPublicKey(ca.publicKey)}\n`, hostKeyAlias: 'early.test', command: 'echo cert' });
    assert.equal(r.status, 0, r.stderr);
  });

  void it('stops sshd, kills its sessions and removes its temp dir on SIGTERM', async () => {
    const g = start();
    const hostKey = (await g.waitFor('host-key'))['key'] as string;
    const port = await freePort();
    g.send({ v: 1, type: 'config', hostname: 'term.test', authorizedKeys: [key.publicKey], sshPort: port });
    await g.waitFor('ready');
    const session = ssh({ port, key, knownHosts: `[127.0.0.1]:${port} ${hostKey}\n`, command: 'sleep 100', timeoutMs: 60_000 });
    await waitUntil(() => vmProcesses({ marker: g.marker }).some((p) => p.pid !== g.child.pid));
    assert.equal(leftovers(g.tmp).length, 1, 'its private temp dir exists while it runs');
    g.child.kill('SIGTERM');
    assert.deepEqual(await g.exited, { code: 0, signal: null });
    assert.deepEqual(vmProcesses({ marker: g.marker }), []);
    assert.deepEqual(leftovers(g.tmp), [], 'the temp dir with the private key is gone');
    assert.equal(await portIsFree(port), true);
    assert.notEqual((await session).status, 0);
    assert.match(g.console(), /SIGTERM; stopping/);
  });

  void it('stops when the hypervisor end of the channel closes', async () => {
    const g = start();
    await g.waitFor('host-key');
    const port = await freePort();
    g.send({ v: 1, type: 'config', hostname: 'gone.test', authorizedKeys: [key.publicKey], sshPort: port });
    await g.waitFor('ready');
    g.closeChannel();
    assert.deepEqual(await g.exited, { code: 0, signal: null });
    assert.deepEqual(vmProcesses({ marker: g.marker }), []);
    assert.deepEqual(leftovers(g.tmp), []);
    assert.equal(await portIsFree(port), true);
    assert.match(g.console(), /the VM channel closed; stopping/);
  });

  void it('refuses to boot without a valid VM marker', async () => {
    for (const marker of [null, 'not-hex', 'A'.repeat(32)]) {
      const g = start({ marker });
      assert.deepEqual(await g.exited, { code: 2, signal: null });
      assert.deepEqual(g.messages, []);
      assert.match(g.console(), /refusing to boot/);
    }
  });

  void it('exits with an error, and no sshd, when sshd cannot listen on the port', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const address = busy.address();
    assert.ok(typeof address === 'object' && address !== null);
    try {
      const g = start();
      await g.waitFor('host-key');
      g.send({ v: 1, type: 'config', hostname: 'busy.test', authorizedKeys: [key.publicKey], sshPort: address.port });
      assert.deepEqual(await g.exited, { code: 1, signal: null });
      assert.equal(g.messages.some((m) => m['type'] === 'ready'), false);
      assert.deepEqual(vmProcesses({ marker: g.marker }), []);
      assert.deepEqual(leftovers(g.tmp), []);
    } finally {
      busy.close();
    }
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
