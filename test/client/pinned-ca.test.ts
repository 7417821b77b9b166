// Pinning the CA (src/client/pinned-ca.ts) against the real CA over HTTPS, and against
// impostors: a server with another identity, a server that serves the genuine identity
// document without holding the CA's TLS key, a server that answers too much. Nothing is
// pinned unless the fingerprint matches and the server proves the CA's TLS identity.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clientPaths, configDir } from '../../src/client/paths.js';
import { loadPinnedCa, parseCaUrl, trustCa } from '../../src/client/pinned-ca.js';
import { exportPrivateKeyPem, generateKeyPair } from '../../src/crypto/keys.js';
import { issueTlsServerCertificate } from '../../src/crypto/tls.js';
import { createSelfSignedCa } from '../../src/crypto/x509.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { startTestCa, type TestCa } from '../ca/support/ca.js';
import { tempDir } from '../support/system.js';

const code = (c: string) => (e: unknown) => isTrustlaunchError(e) && e.code === c;

/** An HTTPS server with its own (self-made) TLS identity answering GET /v1/keys with `body`. */
async function impostor(body: string): Promise<{ url: string; close(): Promise<void> }> {
  const key = generateKeyPair('ecdsa-p256').privateKey;
  const root = await createSelfSignedCa({ commonName: 'impostor', privateKey: key });
  const tls = await issueTlsServerCertificate({ issuer: { certificate: root, privateKey: key } });
  const server: Server = createServer({ cert: tls.chain.map((c) => c.pem).join(''), key: exportPrivateKeyPem(tls.privateKey) }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address() as { port: number };
  return { url: `https://127.0.0.1:${address.port}`, close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))) };
}

describe('pinning the CA', () => {
  const tmp = tempDir('tl-pin-');
  let ca: TestCa;
  let other: TestCa;
  let n = 0;
  const fresh = () => clientPaths(join(tmp.path, `config-${n++}`));

  before(async () => {
    ca = await startTestCa();
    other = await startTestCa();
  });
  after(async () => {
    await ca?.dispose();
    await other?.dispose();
    tmp.dispose();
  });

  it('pins the CA that has the fingerprint, and loads it back; nothing works before', async () => {
    const paths = fresh();
    await assert.rejects(loadPinnedCa(paths), code('CA_NOT_PINNED'));
    const r = await trustCa({ paths, url: ca.url, fingerprint: ca.service.fingerprint });
    assert.equal(r.unchanged, false);
    assert.equal(r.ca.fingerprint, ca.service.fingerprint);
    const loaded = await loadPinnedCa(paths);
    assert.equal(loaded.url, ca.url);
    assert.equal(loaded.issuer, ca.material.config.issuer);
    assert.equal(loaded.sshCaKeyLine, ca.material.identity.sshCaKey);
    assert.equal((await trustCa({ paths, url: ca.url, fingerprint: ca.service.fingerprint })).unchanged, true);
  });

  it('pins from the identity document handed over, checked against the served one', async () => {
    const paths = fresh();
    const identityFile = join(ca.dir, 'identity.json');
    const r = await trustCa({ paths, url: ca.url, identityFile });
    assert.equal(r.ca.fingerprint, ca.service.fingerprint);
    // the identity file with a fingerprint that is not its own
    await assert.rejects(trustCa({ paths: fresh(), url: ca.url, identityFile, fingerprint: other.service.fingerprint }), code('CA_IDENTITY_MISMATCH'));
    // the right identity file, but the URL is another CA
    const p2 = fresh();
    await assert.rejects(trustCa({ paths: p2, url: other.url, identityFile }), code('CA_IDENTITY_MISMATCH'));
    assert.equal(existsSync(p2.pinnedCa), false);
  });

  it('refuses a CA with another fingerprint, and writes nothing', async () => {
    const paths = fresh();
    await assert.rejects(trustCa({ paths, url: other.url, fingerprint: ca.service.fingerprint }), code('CA_IDENTITY_MISMATCH'));
    assert.equal(existsSync(paths.pinnedCa), false);
  });

  it('refuses a server that serves the genuine identity without holding the CA\'s TLS key', async () => {
    const copy = await impostor(JSON.stringify(ca.material.identity));
    try {
      const paths = fresh();
      await assert.rejects(trustCa({ paths, url: copy.url, fingerprint: ca.service.fingerprint }), code('CA_UNREACHABLE'));
      assert.equal(existsSync(paths.pinnedCa), false);
    } finally {
      await copy.close();
    }
  });

  it('bounds what it reads: an answer of 100 KiB is refused', async () => {
    const big = await impostor(JSON.stringify({ pad: 'x'.repeat(100 * 1024) }));
    try {
      await assert.rejects(trustCa({ paths: fresh(), url: big.url, fingerprint: ca.service.fingerprint }), code('UNAVAILABLE'));
    } finally {
      await big.close();
    }
  });

  it('replaces another pinned CA only when asked to', async () => {
    const paths = fresh();
    await trustCa({ paths, url: ca.url, fingerprint: ca.service.fingerprint });
    await assert.rejects(trustCa({ paths, url: other.url, fingerprint: other.service.fingerprint }), code('CONFLICT'));
    assert.equal((await loadPinnedCa(paths)).fingerprint, ca.service.fingerprint);
    const r = await trustCa({ paths, url: other.url, fingerprint: other.service.fingerprint, replace: true });
    assert.equal(r.replaced, ca.service.fingerprint);
    assert.equal((await loadPinnedCa(paths)).fingerprint, other.service.fingerprint);
  });

  it('re-checks the fingerprint on every load: an edited pin file is refused', async () => {
    const paths = fresh();
    await trustCa({ paths, url: ca.url, fingerprint: ca.service.fingerprint });
    const file = JSON.parse(readFileSync(paths.pinnedCa, 'utf8')) as { identity: { sshCaKey: string } };
    file.identity.sshCaKey = other.material.identity.sshCaKey;
    writeFileSync(paths.pinnedCa, JSON.stringify(file));
    await assert.rejects(loadPinnedCa(paths), code('CA_IDENTITY_MISMATCH'));
    writeFileSync(paths.pinnedCa, 'not json');
    await assert.rejects(loadPinnedCa(paths), code('CA_NOT_PINNED'));
  });

  it('takes only https://HOST[:PORT] as the CA URL, and a well-formed fingerprint', async () => {
    for (const bad of ['http://127.0.0.1:1', 'https://u:p@127.0.0.1', 'https://127.0.0.1/v1', 'https://127.0.0.1?x=1', 'nonsense']) {
      assert.throws(() => parseCaUrl(bad), code('MALFORMED_REQUEST'), bad);
    }
    assert.equal(parseCaUrl('https://127.0.0.1:8443/'), 'https://127.0.0.1:8443');
    await assert.rejects(trustCa({ paths: fresh(), url: ca.url, fingerprint: 'sha256:zz' }), code('MALFORMED_DIGEST'));
    await assert.rejects(trustCa({ paths: fresh(), url: ca.url }), code('MALFORMED_REQUEST'));
  });

  it('finds the config directory: flag, TRUSTLAUNCH_CONFIG_DIR, XDG_CONFIG_HOME, ~/.config', () => {
    const env = { HOME: '/home/u', XDG_CONFIG_HOME: '/xdg', TRUSTLAUNCH_CONFIG_DIR: '/explicit' };
    assert.equal(configDir('/flag', env), '/flag');
    assert.equal(configDir(undefined, env), '/explicit');
    assert.equal(configDir(undefined, { HOME: '/home/u', XDG_CONFIG_HOME: '/xdg' }), '/xdg/trustlaunch');
    assert.equal(configDir(undefined, { HOME: '/home/u', XDG_CONFIG_HOME: 'relative' }), '/home/u/.config/trustlaunch');
    assert.equal(configDir(undefined, { HOME: '/home/u', XDG_CONFIG_HOME: '' }), '/home/u/.config/trustlaunch');
  });
});
