// What the CA signs, checked by code no one here wrote: the receipt's signature with
// `openssl` from the JWKS the CA serves, the host certificate with `ssh-keygen -L`; and by
// crypto's own strict verifiers (verifyReceipt, verifyHostCertificate) and jose.
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compactVerify, importJWK } from 'jose';
import { ReceiptSigner } from '../../src/ca/issuer/receipt-signer.js';
import { HostCertificateSigner } from '../../src/ca/issuer/host-certificate.js';
import { parseIdentity } from '../../src/ca/identity.js';
import { generateKeyPair, receiptKeyId, sshPublicKeyBlob, verifyHostCertificate, verifyReceipt, decodeReceiptUnverified, formatSshPublicKey } from '../../src/crypto/index.js';
import { sshFingerprint } from '../../src/crypto/fingerprints.js';
import { RECEIPT_PROFILE, type ReceiptClaims } from '../../src/protocol/messages.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { requireCommand, tempDir } from '../support/system.js';
import { run } from '../crypto/support.js';
import { startTestCa, type TestCa } from './support/ca.js';
import { SimNode } from './support/sim-node.js';

const KERNEL = sha256Digest('kernel image');

function claims(over: Partial<ReceiptClaims> = {}): ReceiptClaims {
  const now = Math.floor(Date.now() / 1000);
  return { iss: 'trustlaunch-ca-test', iat: now, exp: now + 600, jti: 'jti-1', eat_profile: RECEIPT_PROFILE, eat_nonce: newNonce(), 'ear.status': 'affirming', sub: 'vm-1', node: 'node-1', ...over };
}

/** `openssl asn1parse -genconf` builds the DER ECDSA-Sig-Value from r and s: no code of ours in the oracle. */
function derSignatureWithOpenssl(dir: string, p1363: Buffer): string {
  const conf = join(dir, 'sig.conf');
  const out = join(dir, 'sig.der');
  writeFileSync(conf, `asn1=SEQUENCE:sig\n[sig]\nr=INTEGER:0x${p1363.subarray(0, 32).toString('hex')}\ns=INTEGER:0x${p1363.subarray(32).toString('hex')}\n`);
  const r = run('openssl', ['asn1parse', '-genconf', conf, '-out', out, '-noout']);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

/** Verifies a compact JWS with openssl, the public key taken from a JWK (converted by node, not by us). */
function opensslVerifiesJws(dir: string, jws: string, jwk: Record<string, unknown>): { status: number; stdout: string; stderr: string } {
  const [h, p, s] = jws.split('.') as [string, string, string];
  const input = join(dir, 'input');
  const pem = join(dir, 'pub.pem');
  writeFileSync(input, `${h}.${p}`);
  writeFileSync(pem, createPublicKey({ key: jwk as never, format: 'jwk' }).export({ format: 'pem', type: 'spki' }));
  const sig = Buffer.from(s, 'base64url');
  if (jwk['kty'] === 'EC') {
    return run('openssl', ['dgst', '-sha256', '-verify', pem, '-signature', derSignatureWithOpenssl(dir, sig), input]);
  }
  const sigFile = join(dir, 'sig.bin');
  writeFileSync(sigFile, sig);
  return run('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', pem, '-rawin', '-in', input, '-sigfile', sigFile]);
}

describe('receipt signer', () => {
  for (const alg of ['ES256', 'EdDSA'] as const) {
    it(`${alg}: verifyReceipt and jose accept what it signs, with the same header issueReceipt writes`, async () => {
      const { privateKey, publicKey } = generateKeyPair(alg === 'ES256' ? 'ecdsa-p256' : 'ed25519');
      const signer = new ReceiptSigner(privateKey, receiptKeyId(publicKey));
      const c = claims();
      const jwt = signer.sign(c);
      const verified = await verifyReceipt(jwt, { keys: [publicKey], issuer: c.iss, expectedNonce: c.eat_nonce });
      assert.deepEqual(verified, c);
      assert.deepEqual(decodeReceiptUnverified(jwt).header, { alg, typ: 'eat+jwt', kid: receiptKeyId(publicKey) });
      const jose = await compactVerify(jwt, await importJWK(publicKey.export({ format: 'jwk' }) as never, alg));
      assert.equal(jose.protectedHeader.alg, alg);
    });
  }

  it('a changed payload or another key fails verification', async () => {
    const { privateKey, publicKey } = generateKeyPair('ecdsa-p256');
    const jwt = new ReceiptSigner(privateKey, 'k').sign(claims());
    const [h, , s] = jwt.split('.') as [string, string, string];
    const forged = `${h}.${Buffer.from(JSON.stringify(claims({ sub: 'vm-2' }))).toString('base64url')}.${s}`;
    await assert.rejects(verifyReceipt(forged, { keys: [publicKey], issuer: 'trustlaunch-ca-test' }), (e: { code?: string }) => e.code === 'RECEIPT_SIGNATURE_INVALID');
    const other = generateKeyPair('ecdsa-p256').publicKey;
    await assert.rejects(verifyReceipt(jwt, { keys: [other], issuer: 'trustlaunch-ca-test' }), (e: { code?: string }) => e.code === 'RECEIPT_SIGNATURE_INVALID');
  });

  it('refuses to sign a receipt that expires before it is issued', () => {
    const signer = new ReceiptSigner(generateKeyPair('ed25519').privateKey, 'k');
    assert.throws(() => signer.sign(claims({ exp: 0, iat: 10 })), TypeError);
  });
});

describe('host certificate signer', () => {
  const ca = generateKeyPair('ed25519');
  const signer = new HostCertificateSigner(ca.privateKey);
  for (const type of ['ed25519', 'ecdsa-p256'] as const) {
    it(`${type} host key: crypto's strict verifier accepts it with the exact fields asked for`, () => {
      const host = generateKeyPair(type);
      const now = Math.floor(Date.now() / 1000);
      const line = signer.sign({ hostKeyBlob: sshPublicKeyBlob(host.publicKey), principals: ['vm-1.trustlaunch.test'], keyId: 'vm=vm-1 node=n nonce=x', serial: 42n, validAfter: now - 300, validBefore: now + 600 });
      const cert = verifyHostCertificate(line, { caPublicKey: ca.publicKey, hostKey: host.publicKey, principal: 'vm-1.trustlaunch.test' });
      assert.equal(cert.keyId, 'vm=vm-1 node=n nonce=x');
      assert.equal(cert.serial, 42n);
      assert.deepEqual(cert.principals, ['vm-1.trustlaunch.test']);
      assert.equal(cert.validAfter.getTime(), (now - 300) * 1000);
      assert.equal(cert.validBefore.getTime(), (now + 600) * 1000);
      assert.deepEqual([cert.criticalOptions, cert.extensions], [[], []]);
    });
  }

  it('refuses impossible requests', () => {
    const host = sshPublicKeyBlob(generateKeyPair('ed25519').publicKey);
    assert.throws(() => signer.sign({ hostKeyBlob: host, principals: [], keyId: 'k', serial: 1n, validAfter: 1, validBefore: 2 }), TypeError);
    assert.throws(() => signer.sign({ hostKeyBlob: host, principals: ['a'], keyId: 'k', serial: 1n, validAfter: 2, validBefore: 2 }), TypeError);
  });
});

describe('receipts of a running CA, checked by openssl and ssh-keygen', () => {
  let ca: TestCa;
  let node: SimNode;
  const tmp = tempDir('tl-ca-oracle-');

  before(async () => {
    requireCommand('openssl');
    requireCommand('ssh-keygen');
    ca = await startTestCa({ databaseUrl: `sqlite:${tmp.path}/ca.db` });
    node = await SimNode.create({ dir: join(tmp.path, 'node') });
    await ca.enroll(node);
    await ca.admin.addAllowlist({ name: 'kernel', kernel: KERNEL });
  });
  after(async () => {
    await node.dispose();
    await ca.dispose();
    tmp.dispose();
  });

  it('the affirming receipt verifies with openssl against the key in GET /v1/keys, and a flipped bit does not', async () => {
    const evidence = await node.evidence();
    const r = await ca.client.evidence(evidence);
    const keys = await ca.client.keys();
    const jwk = keys.receiptKeys.keys[0] as unknown as Record<string, unknown>;
    const ok = opensslVerifiesJws(tmp.path, r.receipt, jwk);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /Verified OK|Signature Verified Successfully/);
    const [h, p, s] = r.receipt.split('.') as [string, string, string];
    const tamperedPayload = Buffer.from(p, 'base64url');
    tamperedPayload[10] = (tamperedPayload[10] as number) ^ 1;
    const bad = opensslVerifiesJws(tmp.path, `${h}.${tamperedPayload.toString('base64url')}.${s}`, jwk);
    assert.notEqual(bad.status, 0);
    // and the pinned-identity path a client uses
    const pinned = parseIdentity(keys, ca.material.fingerprint);
    const verified = await verifyReceipt(r.receipt, { keys: pinned.receiptKeys, issuer: pinned.issuer, expectedNonce: evidence.claims.nonce });
    assert.equal(verified['ear.status'], 'affirming');
    assert.equal(verified.ssh_host_key, evidence.claims.sshHostKey);
    assert.equal(verified.ssh_host_key_fp, sshFingerprint(evidence.claims.sshHostKey));
    assert.equal(verified.kernel, KERNEL);
    assert.equal(verified.sub, evidence.claims.vmId);
    assert.equal(verified.allowlist, 'kernel');
  });

  it('an EdDSA CA: openssl verifies its receipts too', async () => {
    const dir = tempDir('tl-ca-eddsa-');
    const edCa = await startTestCa({ databaseUrl: `sqlite:${dir.path}/ca.db`, init: { alg: 'EdDSA' } });
    try {
      await edCa.enroll(node);
      await edCa.admin.addAllowlist({ name: 'kernel', kernel: KERNEL });
      const r = await edCa.client.evidence(await node.evidence());
      const keys = await edCa.client.keys();
      assert.equal(keys.receiptKeys.keys[0]?.alg, 'EdDSA');
      const ok = opensslVerifiesJws(dir.path, r.receipt, keys.receiptKeys.keys[0]);
      assert.equal(ok.status, 0, ok.stderr);
    } finally {
      await edCa.dispose();
      dir.dispose();
    }
  });

  it('ssh-keygen -L reads the host certificate: host type, signing CA, key id, principal, validity', async () => {
    const evidence = await node.evidence();
    const r = await ca.client.evidence(evidence);
    const certFile = join(tmp.path, 'host-cert.pub');
    writeFileSync(certFile, `${r.hostCertificate}\n`);
    const out = run('ssh-keygen', ['-L', '-f', certFile]);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /Type: ssh-ed25519-cert-v01@openssh\.com host certificate/);
    const caKeyFile = join(tmp.path, 'ssh-ca.pub');
    writeFileSync(caKeyFile, `${ca.material.sshCaPublicKey}\n`);
    const caFp = run('ssh-keygen', ['-l', '-f', caKeyFile]).stdout.split(' ')[1] as string;
    assert.match(out.stdout, new RegExp(`Signing CA: ED25519 ${caFp.replace(/[+/]/g, (c) => `\\${c}`)}`));
    const hostFile = join(tmp.path, 'host.pub');
    writeFileSync(hostFile, `${evidence.claims.sshHostKey}\n`);
    const hostFp = run('ssh-keygen', ['-l', '-f', hostFile]).stdout.split(' ')[1] as string;
    assert.ok(out.stdout.includes(`Public key: ED25519-CERT ${hostFp}`), out.stdout);
    assert.ok(out.stdout.includes(`Key ID: "vm=${evidence.claims.vmId} node=${node.nodeId} nonce=${evidence.claims.nonce}"`), out.stdout);
    assert.match(out.stdout, new RegExp(`Principals: \\n\\s+${evidence.claims.hostname.replace(/\./g, '\\.')}\\n`));
    assert.match(out.stdout, /Critical Options: \(none\)/);
    const valid = /Valid: from (\S+) to (\S+)/.exec(out.stdout);
    assert.ok(valid !== null);
    const receipt = decodeReceiptUnverified(r.receipt).claims;
    // ssh-keygen prints local time without zone; compare as UTC-naive strings at second precision
    const local = (s: number): string => new Date(s * 1000 - new Date(s * 1000).getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
    assert.equal(valid[2], local(receipt.exp as number), 'the certificate ends with the receipt');
    assert.equal(valid[1], local((receipt.iat as number) - 300), 'and starts five minutes before it was issued');
    verifyHostCertificate(r.hostCertificate, { caPublicKey: ca.material.sshCaPublicKey, hostKey: evidence.claims.sshHostKey, principal: evidence.claims.hostname });
  });

  it('an ECDSA P-256 host key gets an ecdsa-sha2-nistp256 certificate', async () => {
    const hostKey = formatSshPublicKey(generateKeyPair('ecdsa-p256').publicKey);
    const r = await ca.client.evidence(await node.evidence(node.claims({ sshHostKey: hostKey })));
    const certFile = join(tmp.path, 'ecdsa-cert.pub');
    writeFileSync(certFile, `${r.hostCertificate}\n`);
    const out = run('ssh-keygen', ['-L', '-f', certFile]);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /Type: ecdsa-sha2-nistp256-cert-v01@openssh\.com host certificate/);
  });
});
