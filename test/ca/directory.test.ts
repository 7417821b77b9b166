// The CA directory and identity: files and modes, refusal to overwrite, the fingerprint
// (checked against an independent canonicalisation by python3 and sha256sum), the root
// certificate that fits device NV, TLS names, and refusal of unprotected keys.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CA_FILES, readCaConfig } from '../../src/ca/config.js';
import { addEndorsementRoot, initCaDirectory, loadCaDirectory, loadEndorsementRoots, MAX_ROOT_DER_BYTES, readAdminToken } from '../../src/ca/directory.js';
import { identityFingerprint, parseIdentity } from '../../src/ca/identity.js';
import { tokenMatches } from '../../src/http/auth.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { verifyChain } from '../../src/crypto/x509.js';
import { issueTlsServerCertificate } from '../../src/crypto/tls.js';
import { requireCommand, tempDir } from '../support/system.js';

const SECRET_FILES = [CA_FILES.adminToken, CA_FILES.receiptKey, CA_FILES.sshCaKey, CA_FILES.rootKey, CA_FILES.tlsKey];
const PUBLIC_FILES = [CA_FILES.config, CA_FILES.identity, CA_FILES.rootCertificate, CA_FILES.tlsCertificate, CA_FILES.sshCaPublicKey];

describe('ca directory', () => {
  it('init writes every file, secrets 0600; the fingerprint is sha256 of the canonical identity (python3 + sha256sum agree)', async () => {
    const tmp = tempDir();
    const dir = join(tmp.path, 'ca');
    const r = await initCaDirectory(dir, { names: ['ca.example.test', '10.1.2.3'] });
    for (const f of SECRET_FILES) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    for (const f of PUBLIC_FILES) assert.equal(statSync(join(dir, f)).mode & 0o077, 0o044, f);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const identity = JSON.parse(readFileSync(join(dir, CA_FILES.identity), 'utf8')) as unknown;
    assert.deepEqual(identity, r.identity);
    assert.equal(identityFingerprint(r.identity), r.fingerprint);
    requireCommand('python3');
    requireCommand('sha256sum');
    // RFC 8785 for this document (ASCII strings, no numbers) is sorted keys without whitespace.
    const oracle = execFileSync('sh', ['-c', `python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), sort_keys=True, separators=(",",":")))' ${join(dir, CA_FILES.identity)} | sha256sum`], { encoding: 'utf8' });
    assert.equal(`sha256:${oracle.split(' ')[0]}`, r.fingerprint);
    const config = await readCaConfig(join(dir, CA_FILES.config));
    assert.ok(tokenMatches(await readAdminToken(dir), config.adminTokenHash));
    assert.ok(!readFileSync(join(dir, CA_FILES.config), 'utf8').includes(r.adminToken), 'the token itself is only in admin.token');
    const m = await loadCaDirectory(dir);
    assert.equal(m.fingerprint, r.fingerprint);
    assert.ok(m.root.certificate.der.length <= MAX_ROOT_DER_BYTES);
    const leaf = m.tls.chain[0];
    assert.ok(leaf?.dnsNames.includes('ca.example.test') && leaf.ipAddresses.includes('10.1.2.3') && leaf.ipAddresses.includes('127.0.0.1'));
    assert.ok(leaf !== undefined);
    await verifyChain(leaf, { roots: [m.root.certificate] });
    assert.match(config.issuer, /^trustlaunch-ca-[0-9a-f]{12}$/);
    tmp.dispose();
  });

  it('refuses to overwrite an existing CA (CONFLICT, nothing changed); --force makes a new identity', async () => {
    const tmp = tempDir();
    const dir = join(tmp.path, 'ca');
    const first = await initCaDirectory(dir);
    const before = readFileSync(join(dir, CA_FILES.receiptKey));
    await assert.rejects(initCaDirectory(dir), (e) => isTrustlaunchError(e, 'CONFLICT'));
    assert.deepEqual(readFileSync(join(dir, CA_FILES.receiptKey)), before);
    const second = await initCaDirectory(dir, { force: true, alg: 'EdDSA' });
    assert.notEqual(second.fingerprint, first.fingerprint);
    assert.equal(second.identity.receiptKeys.keys[0]?.alg, 'EdDSA');
    assert.equal((await loadCaDirectory(dir)).receiptAlgorithm, 'EdDSA');
    tmp.dispose();
  });

  it('a private key others can read is refused (FILE_INSECURE)', async () => {
    const tmp = tempDir();
    const dir = join(tmp.path, 'ca');
    await initCaDirectory(dir);
    chmodSync(join(dir, CA_FILES.receiptKey), 0o644);
    await assert.rejects(loadCaDirectory(dir), (e) => isTrustlaunchError(e, 'FILE_INSECURE'));
    tmp.dispose();
  });

  it('an expiring TLS certificate, or one signed by another root, is re-issued at load', async () => {
    const tmp = tempDir();
    const dir = join(tmp.path, 'ca');
    await initCaDirectory(dir);
    const m = await loadCaDirectory(dir);
    const soon = await issueTlsServerCertificate({ issuer: m.root, notAfter: new Date(Date.now() + 24 * 3600_000) });
    writeFileSync(join(dir, CA_FILES.tlsCertificate), soon.chain.map((c) => c.pem).join(''));
    const again = await loadCaDirectory(dir);
    assert.ok((again.tls.chain[0]?.notAfter.getTime() ?? 0) > Date.now() + 300 * 24 * 3600_000);
    assert.equal(statSync(join(dir, CA_FILES.tlsKey)).mode & 0o777, 0o600);
    tmp.dispose();
  });

  it('endorsement roots: CA certificates only, read from the directory', async () => {
    const tmp = tempDir();
    const dir = join(tmp.path, 'ca');
    await initCaDirectory(dir);
    const m = await loadCaDirectory(dir);
    const leafFile = join(tmp.path, 'leaf.pem');
    writeFileSync(leafFile, m.tls.chain[0]?.pem ?? '');
    await assert.rejects(addEndorsementRoot(dir, leafFile), (e) => isTrustlaunchError(e, 'MALFORMED_CERTIFICATE'));
    const rootFile = join(tmp.path, 'vendor.pem');
    writeFileSync(rootFile, m.root.certificate.pem);
    const added = await addEndorsementRoot(dir, rootFile);
    assert.match(added.file, /^[0-9a-f]{16}\.pem$/);
    assert.deepEqual((await loadEndorsementRoots(dir)).map((c) => c.sha256Fingerprint), [m.root.certificate.sha256Fingerprint]);
    tmp.dispose();
  });
});

describe('ca identity', () => {
  it('parses a document, checks a pinned fingerprint, refuses a changed one or a malformed one', async () => {
    const tmp = tempDir();
    const r = await initCaDirectory(join(tmp.path, 'ca'));
    const pinned = parseIdentity(r.identity, r.fingerprint);
    assert.equal(pinned.issuer, r.config.issuer);
    assert.equal(pinned.tlsRoot.sha256Fingerprint, (await loadCaDirectory(join(tmp.path, 'ca'))).root.certificate.sha256Fingerprint);
    const other = await initCaDirectory(join(tmp.path, 'other'));
    const swapped = { ...r.identity, sshCaKey: other.identity.sshCaKey };
    assert.throws(() => parseIdentity(swapped, r.fingerprint), (e) => isTrustlaunchError(e, 'CA_IDENTITY_MISMATCH'));
    assert.throws(() => parseIdentity({ ...r.identity, extra: 1 }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    assert.throws(() => parseIdentity({ ...r.identity, tlsRoot: other.identity.tlsRoot.replace('MII', 'MIJ') }), (e) => isTrustlaunchError(e));
    tmp.dispose();
  });
});
