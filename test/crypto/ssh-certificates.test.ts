import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sshpk from 'sshpk';
import { sshFingerprint } from '../../src/crypto/fingerprints.js';
import { exportPrivateKeyPem, generateKeyPair } from '../../src/crypto/keys.js';
import { issueHostCertificate, parseHostCertificate, verifyHostCertificate, type HostCertificateFailure } from '../../src/crypto/ssh-certificates.js';
import { formatSshPublicKey } from '../../src/crypto/ssh-keys.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { startSshd, type Sshd } from '../support/sshd.js';
import { tempDir } from '../support/system.js';
import { run } from './support.js';

const PRINCIPAL = 'vm-1.trustlaunch.test';
const VALID_AFTER = new Date('2026-01-01T00:00:00Z');
const VALID_BEFORE = new Date('2027-01-01T00:00:00Z');
const NOW = new Date('2026-06-01T00:00:00Z');

function reasonOf(fn: () => unknown): HostCertificateFailure | 'accepted' {
  try {
    fn();
    return 'accepted';
  } catch (e) {
    assert.ok(isTrustlaunchError(e, 'HOST_CERT_INVALID'), `unexpected error ${String(e)}`);
    return e.detail?.['reason'] as HostCertificateFailure;
  }
}

/** The CA key in OpenSSH's private key format, so `ssh-keygen -s` can sign with it too. */
function opensshPrivateKey(key: KeyObject): string {
  return sshpk.parsePrivateKey(exportPrivateKeyPem(key), 'pkcs8').toString('ssh');
}

describe('OpenSSH host certificates (ssh-keygen as the oracle)', () => {
  const dir = tempDir('tl-sshcert-');
  const ca = generateKeyPair('ed25519');
  const host = generateKeyPair('ed25519');
  const hostLine = formatSshPublicKey(host.publicKey);
  const issue = (over: Partial<Parameters<typeof issueHostCertificate>[0]> = {}): string =>
    issueHostCertificate({ caPrivateKey: ca.privateKey, hostKey: hostLine, principals: [PRINCIPAL], keyId: 'vm-1', serial: 42n, validAfter: VALID_AFTER, validBefore: VALID_BEFORE, ...over });
  const keygenList = (line: string): { status: number; stdout: string; stderr: string } => {
    const file = join(dir.path, 'cert.pub');
    writeFileSync(file, `${line}\n`);
    return run('ssh-keygen', ['-L', '-f', file], { env: { TZ: 'UTC' } });
  };
  after(() => dir.dispose());

  it('issues a certificate that ssh-keygen -L prints with our key id, principals, validity and CA', () => {
    const line = issue({ principals: [PRINCIPAL, 'vm-1'] });
    const out = keygenList(line);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /Type: ssh-ed25519-cert-v01@openssh\.com host certificate/);
    assert.match(out.stdout, new RegExp(`Public key: ED25519-CERT ${escape(sshFingerprint(host.publicKey))}`));
    assert.match(out.stdout, new RegExp(`Signing CA: ED25519 ${escape(sshFingerprint(ca.publicKey))} \\(using ssh-ed25519\\)`));
    assert.match(out.stdout, /Key ID: "vm-1"/);
    assert.match(out.stdout, /Serial: 42\n/);
    assert.match(out.stdout, /Valid: from 2026-01-01T00:00:00 to 2027-01-01T00:00:00/);
    assert.match(out.stdout, /Principals: \n\s+vm-1\.trustlaunch\.test\n\s+vm-1\n/);
    assert.match(out.stdout, /Critical Options: \(none\)/);

    const caLine = formatSshPublicKey(ca.publicKey);
    const cert = verifyHostCertificate(line, { caPublicKey: caLine, hostKey: hostLine, principal: 'vm-1', now: NOW });
    assert.equal(cert.keyId, 'vm-1');
    assert.equal(cert.serial, 42n);
    assert.equal(cert.kind, 'host');
    assert.deepEqual(cert.principals, [PRINCIPAL, 'vm-1']);
    assert.deepEqual([cert.validAfter, cert.validBefore], [VALID_AFTER, VALID_BEFORE]);
    assert.equal(cert.publicKeyLine, hostLine);
    assert.equal(cert.caFingerprint, sshFingerprint(ca.publicKey));
  });

  it('certifies ECDSA P-256 host keys too, and refuses non-Ed25519 CA keys', () => {
    const ecHost = formatSshPublicKey(generateKeyPair('ecdsa-p256').publicKey);
    const line = issue({ hostKey: ecHost });
    assert.match(line, /^ecdsa-sha2-nistp256-cert-v01@openssh\.com /);
    assert.equal(keygenList(line).status, 0);
    assert.equal(verifyHostCertificate(line, { caPublicKey: ca.publicKey, hostKey: ecHost, now: NOW }).publicKeyLine, ecHost);
    // sshpk, reading independently of our parser, agrees on the signer. (Only for ECDSA host
    // keys: sshpk's certificate reader mangles Ed25519 keys whose first byte is >= 0x80 or 0,
    // which is one more reason our verifier reads the certificate itself.)
    assert.equal(sshpk.parseCertificate(line, 'openssh').isSignedByKey(sshpk.parseKey(formatSshPublicKey(ca.publicKey), 'ssh')), true);
    assert.equal(sshpk.parseCertificate(line, 'openssh').isSignedByKey(sshpk.parseKey(formatSshPublicKey(generateKeyPair('ed25519').publicKey), 'ssh')), false);
    assert.throws(() => issue({ caPrivateKey: generateKeyPair('ecdsa-p256').privateKey }), TypeError);
    assert.throws(() => issue({ principals: [] }), TypeError);
  });

  it('issues verifiable certificates for many random host keys (every leading byte of an Ed25519 key)', () => {
    for (let i = 0; i < 400; i++) {
      const key = formatSshPublicKey(generateKeyPair(i % 4 === 0 ? 'ecdsa-p256' : 'ed25519').publicKey);
      const line = issue({ hostKey: key, keyId: `vm-${i}` });
      const cert = verifyHostCertificate(line, { caPublicKey: ca.publicKey, hostKey: key, principal: PRINCIPAL, now: NOW });
      assert.equal(cert.keyId, `vm-${i}`);
    }
  });

  it('accepts a host certificate ssh-keygen -s made with the same CA key (interoperability)', () => {
    const caFile = join(dir.path, 'ca_key');
    writeFileSync(caFile, opensshPrivateKey(ca.privateKey), { mode: 0o600 });
    writeFileSync(join(dir.path, 'host.pub'), `${hostLine}\n`);
    const r = run('ssh-keygen', ['-q', '-s', caFile, '-h', '-I', 'made-by-ssh-keygen', '-n', PRINCIPAL, '-z', '7', '-V', '20260101000000Z:20270101000000Z', join(dir.path, 'host.pub')], { env: { TZ: 'UTC' } });
    assert.equal(r.status, 0, r.stderr);
    const line = run('cat', [join(dir.path, 'host-cert.pub')]).stdout;
    const cert = verifyHostCertificate(line, { caPublicKey: ca.publicKey, principal: PRINCIPAL, hostKey: hostLine, now: NOW });
    assert.equal(cert.keyId, 'made-by-ssh-keygen');
    assert.equal(cert.serial, 7n);

    // and a user certificate from the same CA is no host certificate
    const user = run('ssh-keygen', ['-q', '-s', caFile, '-I', 'alice', '-n', 'alice', '-V', '20260101000000Z:20270101000000Z', join(dir.path, 'host.pub')], { env: { TZ: 'UTC' } });
    assert.equal(user.status, 0, user.stderr);
    const userLine = run('cat', [join(dir.path, 'host-cert.pub')]).stdout;
    assert.equal(reasonOf(() => verifyHostCertificate(userLine, { caPublicKey: ca.publicKey, now: NOW })), 'not-a-host-certificate');
  });

  it('names the reason for each failure', () => {
    const line = issue();
    const other = generateKeyPair('ed25519');
    const ok = { caPublicKey: ca.publicKey, now: NOW };
    assert.equal(reasonOf(() => verifyHostCertificate(line, ok)), 'accepted');
    assert.equal(reasonOf(() => verifyHostCertificate(line, { ...ok, caPublicKey: other.publicKey })), 'wrong-ca');
    assert.equal(reasonOf(() => verifyHostCertificate(line, { ...ok, principal: 'vm-2.trustlaunch.test' })), 'principal');
    assert.equal(reasonOf(() => verifyHostCertificate(line, { ...ok, principal: 'VM-1.trustlaunch.test' })), 'principal');
    assert.equal(reasonOf(() => verifyHostCertificate(line, { ...ok, hostKey: other.publicKey })), 'key-mismatch');
    assert.equal(reasonOf(() => verifyHostCertificate(line, { ...ok, now: VALID_BEFORE })), 'expired');
    assert.equal(reasonOf(() => verifyHostCertificate(line, { ...ok, now: new Date(VALID_AFTER.getTime() - 1000) })), 'not-yet-valid');
    assert.equal(reasonOf(() => verifyHostCertificate(line, { ...ok, now: VALID_AFTER })), 'accepted');
    assert.equal(reasonOf(() => verifyHostCertificate(issue({ caPrivateKey: other.privateKey }), ok)), 'wrong-ca');

    // a certificate with a critical option, properly signed by the CA (re-signed through sshpk,
    // with an ECDSA host key that sshpk's certificate reader keeps intact)
    const cert = sshpk.parseCertificate(issue({ hostKey: formatSshPublicKey(generateKeyPair('ecdsa-p256').publicKey) }), 'openssh');
    (cert.signatures as { openssh: { exts: unknown[] } }).openssh.exts = [{ name: 'force-command', critical: true, data: Buffer.from([0, 0, 0, 1, 0x78]) }];
    cert.signWith(sshpk.parsePrivateKey(exportPrivateKeyPem(ca.privateKey), 'pkcs8'));
    assert.equal(reasonOf(() => verifyHostCertificate(cert.toString('openssh'), ok)), 'critical-option');

    for (const junk of ['', 'ssh-ed25519-cert-v01@openssh.com', `${line}x`, line.replace('ssh-ed25519-cert', 'ssh-rsa-cert'), hostLine, `${line.slice(0, 120)}`]) {
      assert.equal(reasonOf(() => parseHostCertificate(junk)), 'malformed', junk.slice(0, 50));
    }
    const [type, b64] = line.split(' ') as [string, string];
    const trailing = `${type} ${Buffer.concat([Buffer.from(b64, 'base64'), Buffer.from([0])]).toString('base64')}`;
    assert.equal(reasonOf(() => verifyHostCertificate(trailing, ok)), 'malformed');
  });

  it('rejects every one-byte change of the signed part, as ssh-keygen -L does', () => {
    const line = issue();
    const [type, b64] = line.split(' ') as [string, string];
    const blob = Buffer.from(b64, 'base64');
    const cert = parseHostCertificate(line);
    const signedLength = cert.signed.bytes.length;
    const keyIdAt = blob.indexOf(Buffer.from('vm-1'));
    assert.ok(keyIdAt > 0);
    for (let i = 0; i < signedLength; i++) {
      const changed = Buffer.from(blob);
      changed[i] = (changed[i] as number) ^ 0x01;
      const tampered = `${type} ${changed.toString('base64')}`;
      const reason = reasonOf(() => verifyHostCertificate(tampered, { caPublicKey: ca.publicKey, now: NOW }));
      assert.notEqual(reason, 'accepted', `byte ${i}`);
      if (i >= keyIdAt && i < keyIdAt + 4) assert.equal(reason, 'bad-signature');
      // the oracle, on a sample of positions (each is a process start): key id, serial, principals, validity, nonce, key
      if (i % 16 === 0 || (i >= keyIdAt && i < keyIdAt + 4)) {
        const out = keygenList(tampered);
        assert.notEqual(out.status, 0, `ssh-keygen -L accepted a certificate with byte ${i} changed:\n${out.stdout}`);
      }
    }
  });
});

describe('OpenSSH host certificates end to end: real sshd and ssh', () => {
  const ca = generateKeyPair('ed25519');
  const caLine = formatSshPublicKey(ca.publicKey);
  let sshd: Sshd;
  before(async () => {
    sshd = await startSshd({
      certify: (hostKey) =>
        issueHostCertificate({ caPrivateKey: ca.privateKey, hostKey, principals: [PRINCIPAL], keyId: 'vm-1', validAfter: new Date(Date.now() - 60_000), validBefore: new Date(Date.now() + 3600_000) }),
    });
  });
  after(async () => {
    await sshd.stop();
  });

  it('logs in when known_hosts trusts our CA for the principal', async () => {
    const r = await sshd.ssh({ knownHosts: `@cert-authority ${PRINCIPAL} ${caLine}\n`, hostKeyAlias: PRINCIPAL, command: 'echo trustlaunch-ok' });
    assert.equal(r.status, 0, `${r.stderr}\n--- sshd log ---\n${sshd.log()}`);
    assert.equal(r.stdout.trim(), 'trustlaunch-ok');
    assert.match(sshd.log(), /Accepted publickey/);
  });

  it('refuses the host under another CA, or for a name the certificate does not carry', async () => {
    const otherCa = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
    const wrongCa = await sshd.ssh({ knownHosts: `@cert-authority ${PRINCIPAL} ${otherCa}\n`, hostKeyAlias: PRINCIPAL, command: 'echo should-not-run' });
    assert.equal(wrongCa.status, 255);
    assert.match(wrongCa.stderr, /Host key verification failed/);
    assert.doesNotMatch(wrongCa.stdout, /should-not-run/);

    const wrongName = await sshd.ssh({ knownHosts: `@cert-authority *.trustlaunch.test ${caLine}\n`, hostKeyAlias: 'vm-2.trustlaunch.test', command: 'echo should-not-run' });
    assert.equal(wrongName.status, 255);
    assert.match(wrongName.stderr, /Host key verification failed/);
    assert.doesNotMatch(wrongName.stdout, /should-not-run/);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
