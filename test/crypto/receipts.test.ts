import fc from 'fast-check';
import { SignJWT } from 'jose';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sshFingerprint } from '../../src/crypto/fingerprints.js';
import { exportPublicKeyPem, generateKeyPair, importPublicJwk } from '../../src/crypto/keys.js';
import { decodeReceiptUnverified, issueReceipt, parseJwks, receiptKeyId, toJwks, verifyReceipt, type ReceiptSigner, type VerifyReceiptOptions } from '../../src/crypto/receipts.js';
import { p1363ToDer } from '../../src/crypto/signatures.js';
import { formatSshPublicKey } from '../../src/crypto/ssh-keys.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError, type ErrorCode } from '../../src/protocol/errors.js';
import { RECEIPT_PROFILE, type ReceiptClaims } from '../../src/protocol/messages.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { tempDir } from '../support/system.js';
import { run } from './support.js';

const ISSUER = 'https://ca.trustlaunch.test';
const NOW = new Date('2026-06-01T12:00:00Z');
const NOW_S = Math.floor(NOW.getTime() / 1000);

function claims(overrides: Partial<ReceiptClaims> = {}): ReceiptClaims {
  const hostKey = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
  return {
    iss: ISSUER,
    iat: NOW_S - 10,
    exp: NOW_S + 600,
    jti: 'r-0001',
    eat_profile: RECEIPT_PROFILE,
    eat_nonce: newNonce(),
    'ear.status': 'affirming',
    sub: 'vm-1',
    node: 'node-1',
    hostname: 'vm-1.trustlaunch.test',
    kernel: sha256Digest('kernel image'),
    ssh_host_key: hostKey,
    ssh_host_key_fp: sshFingerprint(hostKey),
    ...overrides,
  };
}

function signer(type: 'ecdsa-p256' | 'ed25519'): ReceiptSigner & { publicKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPair(type);
  return { privateKey, publicKey, alg: type === 'ed25519' ? 'EdDSA' : 'ES256', kid: receiptKeyId(publicKey) };
}

const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Asserts the exact code and pipeline step of a rejection. */
async function rejects(jwt: string, opts: VerifyReceiptOptions, code: ErrorCode, step: string): Promise<void> {
  await assert.rejects(verifyReceipt(jwt, opts), (e) => {
    assert.ok(isTrustlaunchError(e), `not a TrustlaunchError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.detail?.['step'], step);
    return true;
  });
}

describe('receipts', () => {
  const es = signer('ecdsa-p256');
  const ed = signer('ed25519');
  const jwks = JSON.parse(JSON.stringify(toJwks([{ key: es.publicKey }, { key: ed.privateKey }]))) as ReturnType<typeof toJwks>;
  const opts: VerifyReceiptOptions = { keys: jwks, issuer: ISSUER, now: NOW };
  const dir = tempDir('tl-receipts-');
  after(() => dir.dispose());

  it('issues ES256 and EdDSA receipts that verify to the same claims', async () => {
    for (const s of [es, ed]) {
      const c = claims();
      const jwt = await issueReceipt(c, s);
      const { header } = decodeReceiptUnverified(jwt);
      assert.deepEqual(header, { alg: s.alg, typ: 'eat+jwt', kid: s.kid });
      assert.deepEqual(await verifyReceipt(jwt, { ...opts, expectedNonce: c.eat_nonce }), c);
      assert.deepEqual(await verifyReceipt(jwt, { keys: [s.publicKey], issuer: ISSUER, now: NOW }), c);
    }
    assert.deepEqual(
      parseJwks(jwks).map((k) => [k.alg, k.kid]),
      [
        ['ES256', es.kid],
        ['EdDSA', ed.kid],
      ],
    );
  });

  it('step parse: RECEIPT_MALFORMED for anything that is not a compact JWS', async () => {
    const good = await issueReceipt(claims(), es);
    const [h, p, s] = good.split('.') as [string, string, string];
    for (const bad of ['', 'abc', `${h}.${p}`, `${h}.${p}.${s}.x`, `${h}=.${p}.${s}`, `!!.${p}.${s}`, `${b64url('not json')}.${p}.${s}`, `${b64url([1])}.${p}.${s}`, 'a'.repeat(20_000)]) {
      await rejects(bad, opts, 'RECEIPT_MALFORMED', 'parse');
    }
    await rejects(`${b64url({ alg: 'ES256', typ: 'eat+jwt', crit: ['exp'], exp: 1 })}.${p}.${s}`, opts, 'RECEIPT_MALFORMED', 'parse');
  });

  it('step algorithm: alg none, HS256 with the public key as HMAC secret, RS256 and unpinned algorithms are refused', async () => {
    const c = claims();
    const payload = b64url(c);
    // alg: none (RFC 7519 §6 unsecured JWT)
    for (const alg of ['none', 'None', 'NONE']) {
      await rejects(`${b64url({ alg, typ: 'eat+jwt' })}.${payload}.`, opts, 'RECEIPT_ALGORITHM_NOT_ALLOWED', 'algorithm');
    }
    // the key-confusion attack: HMAC keyed with the CA's public key, in every form a verifier might hold it
    for (const secret of [exportPublicKeyPem(es.publicKey), JSON.stringify(jwks.keys[0]), es.publicKey.export({ type: 'spki', format: 'der' })]) {
      const input = `${b64url({ alg: 'HS256', typ: 'eat+jwt', kid: es.kid })}.${payload}`;
      const mac = createHmac('sha256', secret).update(input).digest('base64url');
      await rejects(`${input}.${mac}`, opts, 'RECEIPT_ALGORITHM_NOT_ALLOWED', 'algorithm');
    }
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rs256 = await new SignJWT(c).setProtectedHeader({ alg: 'RS256', typ: 'eat+jwt' }).sign(rsa.privateKey);
    await rejects(rs256, { ...opts, keys: [es.publicKey] }, 'RECEIPT_ALGORITHM_NOT_ALLOWED', 'algorithm');
    // EdDSA is valid, but this verifier pinned ES256 only
    await rejects(await issueReceipt(c, ed), { ...opts, algorithms: ['ES256'] }, 'RECEIPT_ALGORITHM_NOT_ALLOWED', 'algorithm');
    await rejects(`${b64url({ typ: 'eat+jwt' })}.${payload}.${b64url('x')}`, opts, 'RECEIPT_ALGORITHM_NOT_ALLOWED', 'algorithm');
  });

  it('step type: RECEIPT_TYPE_INVALID unless typ is eat+jwt', async () => {
    for (const typ of ['JWT', 'at+jwt', undefined]) {
      const header = typ === undefined ? { alg: 'ES256', kid: es.kid } : { alg: 'ES256', typ, kid: es.kid };
      const jwt = await new SignJWT(claims()).setProtectedHeader(header).sign(es.privateKey);
      await rejects(jwt, opts, 'RECEIPT_TYPE_INVALID', 'type');
    }
  });

  it('step signature: another key, a changed claim or an unknown kid gives RECEIPT_SIGNATURE_INVALID, before any claim is read', async () => {
    const c = claims();
    const impostor = signer('ecdsa-p256');
    await rejects(await issueReceipt(c, { ...impostor, kid: es.kid }), opts, 'RECEIPT_SIGNATURE_INVALID', 'signature');
    await rejects(await issueReceipt(c, impostor), opts, 'RECEIPT_SIGNATURE_INVALID', 'signature');
    const [h, , s] = (await issueReceipt(c, es)).split('.') as [string, string, string];
    const changedHostKey = b64url({ ...c, ssh_host_key: formatSshPublicKey(generateKeyPair('ed25519').publicKey) });
    await rejects(`${h}.${changedHostKey}.${s}`, opts, 'RECEIPT_SIGNATURE_INVALID', 'signature');
    // claims that are expired, from another issuer and malformed: the signature step still speaks first
    const junk = b64url({ iss: 'evil', exp: 1, extra: true });
    await rejects(`${h}.${junk}.${s}`, opts, 'RECEIPT_SIGNATURE_INVALID', 'signature');
    // a truncated or extended signature
    await rejects(`${h}.${b64url(c)}.${s.slice(0, -2)}`, opts, 'RECEIPT_SIGNATURE_INVALID', 'signature');
  });

  it('step claims: a signed payload outside ReceiptClaimsSchema is RECEIPT_MALFORMED', async () => {
    const c = claims();
    const { eat_nonce: _omit, ...missing } = c;
    for (const payload of [{ ...c, extra: 1 }, missing, { ...c, 'ear.status': 'maybe' }, { ...c, exp: c.iat }]) {
      const jwt = await new SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'eat+jwt', kid: es.kid }).sign(es.privateKey);
      await rejects(jwt, opts, 'RECEIPT_MALFORMED', 'claims');
    }
  });

  it('steps issuer, time and nonce', async () => {
    await rejects(await issueReceipt(claims({ iss: 'https://other-ca.test' }), es), opts, 'RECEIPT_ISSUER_MISMATCH', 'issuer');
    const c = claims();
    const jwt = await issueReceipt(c, es);
    await rejects(jwt, { ...opts, now: new Date((c.exp + 60) * 1000) }, 'RECEIPT_EXPIRED', 'time');
    await rejects(jwt, { ...opts, now: new Date((c.exp + 5) * 1000), clockSkewSeconds: 0 }, 'RECEIPT_EXPIRED', 'time');
    await verifyReceipt(jwt, { ...opts, now: new Date((c.exp + 5) * 1000) }); // within the default 60 s skew
    await rejects(jwt, { ...opts, now: new Date((c.iat - 61) * 1000) }, 'RECEIPT_NOT_YET_VALID', 'time');
    await verifyReceipt(jwt, { ...opts, now: new Date((c.iat - 59) * 1000) });
    await rejects(jwt, { ...opts, expectedNonce: newNonce() }, 'NONCE_MISMATCH', 'nonce');
    await rejects(jwt, { ...opts, expectedNonce: c.eat_nonce.slice(1) }, 'NONCE_MISMATCH', 'nonce');
  });

  it('refuses bad verifier options as TypeError', async () => {
    const jwt = await issueReceipt(claims(), es);
    await assert.rejects(verifyReceipt(jwt, { ...opts, clockSkewSeconds: 301 }), TypeError);
    await assert.rejects(verifyReceipt(jwt, { ...opts, algorithms: ['HS256' as 'ES256'] }), TypeError);
    await assert.rejects(verifyReceipt(jwt, { ...opts, keys: [es.privateKey] }), TypeError);
    await assert.rejects(issueReceipt(claims(), { ...es, alg: 'EdDSA' }), TypeError);
    await assert.rejects(issueReceipt({ ...claims(), sub: 'Not A Label' }, es), TypeError);
  });

  it('is verified by openssl with the public keys from the JWK Set (ES256 as DER, EdDSA raw)', async () => {
    for (const s of [es, ed]) {
      const jwt = await issueReceipt(claims(), s);
      const [h, p, sig] = jwt.split('.') as [string, string, string];
      const jwk = jwks.keys.find((k) => k.kid === s.kid);
      assert.ok(jwk !== undefined);
      const pub = join(dir.path, `${s.alg}.pem`);
      const input = join(dir.path, `${s.alg}.input`);
      const sigFile = join(dir.path, `${s.alg}.sig`);
      writeFileSync(pub, exportPublicKeyPem(importPublicJwk(jwk)));
      writeFileSync(input, `${h}.${p}`);
      const raw = Buffer.from(sig, 'base64url');
      if (s.alg === 'ES256') {
        assert.equal(raw.length, 64);
        writeFileSync(sigFile, p1363ToDer(raw));
        assert.equal(run('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', sigFile, input]).stdout.trim(), 'Verified OK');
      } else {
        writeFileSync(sigFile, raw);
        assert.equal(run('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', input, '-sigfile', sigFile]).stdout.trim(), 'Signature Verified Successfully');
      }
      // and openssl refuses it once one payload byte differs
      writeFileSync(input, `${h}.${p.slice(0, -1)}${p.endsWith('A') ? 'B' : 'A'}`);
      const refused = s.alg === 'ES256'
        ? run('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', sigFile, input])
        : run('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', input, '-sigfile', sigFile]);
      assert.notEqual(refused.status, 0);
    }
  });

  it('decodes unverified receipts for display only, and never throws anything but RECEIPT_* on garbage', async () => {
    const c = claims();
    const [h, , s] = (await issueReceipt(c, es)).split('.') as [string, string, string];
    const forged = `${h}.${b64url({ ...c, sub: 'vm-2' })}.${s}`;
    assert.equal(decodeReceiptUnverified(forged).claims['sub'], 'vm-2');
    await rejects(forged, opts, 'RECEIPT_SIGNATURE_INVALID', 'signature');
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 400 }), fc.array(fc.string({ maxLength: 60 }), { maxLength: 4 }), async (text, parts) => {
        for (const jwt of [text, parts.join('.'), parts.map((x) => b64url(x)).join('.')]) {
          try {
            await verifyReceipt(jwt, opts);
            return false;
          } catch (e) {
            if (!isTrustlaunchError(e) || !/^RECEIPT_/.test(e.code)) return false;
          }
        }
        return true;
      }),
      { numRuns: 300 },
    );
  });
});
