import fc from 'fast-check';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { exportPrivateKeyPem, exportPublicKeyPem, generateKeyPair } from '../../src/crypto/keys.js';
import { algorithmForKey, derToP1363, p1363ToDer, signMessage, verifyMessage, type SignatureAlgorithm } from '../../src/crypto/signatures.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { tempDir } from '../support/system.js';
import { run } from './support.js';

const pairs = {
  ES256: () => generateKeyPair('ecdsa-p256'),
  ES384: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  EdDSA: () => generateKeyPair('ed25519'),
} as const;

describe('signatures', () => {
  const dir = tempDir('tl-sig-');
  after(() => dir.dispose());

  it('signs and verifies with each algorithm; wrong key, changed data or garbage gives false', () => {
    for (const alg of Object.keys(pairs) as SignatureAlgorithm[]) {
      const { publicKey, privateKey } = pairs[alg]();
      const other = pairs[alg]();
      assert.equal(algorithmForKey(publicKey), alg);
      const data = randomBytes(100);
      const sig = signMessage(alg, privateKey, data);
      assert.equal(verifyMessage(alg, publicKey, data, sig), true);
      assert.equal(verifyMessage(alg, other.publicKey, data, sig), false);
      assert.equal(verifyMessage(alg, publicKey, Buffer.concat([data, Buffer.from([0])]), sig), false);
      for (const junk of [Buffer.alloc(0), randomBytes(sig.length), randomBytes(3), Buffer.concat([sig, Buffer.from([0])])]) {
        assert.equal(verifyMessage(alg, publicKey, data, junk), false);
      }
      if (alg !== 'EdDSA') {
        const der = signMessage(alg, privateKey, data, 'der');
        assert.equal(verifyMessage(alg, publicKey, data, der, 'der'), true);
        assert.equal(verifyMessage(alg, publicKey, data, derToP1363(der, alg === 'ES256' ? 32 : 48)), true);
      }
      assert.throws(() => signMessage(alg === 'EdDSA' ? 'ES256' : 'EdDSA', privateKey, data), TypeError);
    }
  });

  it('converts between DER and P1363 both ways', () => {
    const { privateKey } = generateKeyPair('ecdsa-p256');
    for (let i = 0; i < 200; i++) {
      const der = signMessage('ES256', privateKey, randomBytes(8), 'der');
      const raw = derToP1363(der, 32);
      assert.equal(raw.length, 64);
      assert.ok(p1363ToDer(raw).equals(der));
    }
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 48, maxLength: 48 }), fc.uint8Array({ minLength: 48, maxLength: 48 }), (r, s) => {
        const raw = Buffer.concat([r, s]);
        return derToP1363(p1363ToDer(raw), 48).equals(raw);
      }),
    );
  });

  it('refuses non-DER Ecdsa-Sig-Values', () => {
    const bad = [
      '3006020100020100' + '00', // trailing byte
      '30060201ff020101', // negative r
      '3007020200010201' + '01', // non-minimal r
      '300402010102', // truncated
      '3106020101020101', // SET, not SEQUENCE
      '3009020101020101020101', // three integers
      `3046022100${'ff'.repeat(33)}020101`.slice(0, 20), // truncated long
    ];
    for (const hex of bad) {
      assert.throws(() => derToP1363(Buffer.from(hex, 'hex'), 32, 'TPM_PARSE_ERROR'), (e) => isTrustlaunchError(e, 'TPM_PARSE_ERROR'), hex);
    }
    assert.throws(() => derToP1363(Buffer.from(`3026022100${'7f'.repeat(33)}020101`, 'hex'), 32), (e) => isTrustlaunchError(e));
  });

  it('agrees with openssl dgst in both directions (ES256)', () => {
    const { publicKey, privateKey } = generateKeyPair('ecdsa-p256');
    const pub = join(dir.path, 'pub.pem');
    const priv = join(dir.path, 'priv.pem');
    const data = join(dir.path, 'data');
    const sigFile = join(dir.path, 'sig.der');
    writeFileSync(pub, exportPublicKeyPem(publicKey));
    writeFileSync(priv, exportPrivateKeyPem(privateKey), { mode: 0o600 });
    const payload = randomBytes(1000);
    writeFileSync(data, payload);

    // ours (JWS form) → DER → openssl verifies
    writeFileSync(sigFile, p1363ToDer(signMessage('ES256', privateKey, payload)));
    const ok = run('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', sigFile, data]);
    assert.equal(ok.stdout.trim(), 'Verified OK');
    // a changed payload is refused by openssl too
    writeFileSync(data, Buffer.concat([payload, Buffer.from('x')]));
    assert.notEqual(run('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', sigFile, data]).status, 0);
    writeFileSync(data, payload);

    // openssl signs (DER) → P1363 → we verify
    assert.equal(run('openssl', ['dgst', '-sha256', '-sign', priv, '-out', sigFile, data]).status, 0);
    assert.equal(verifyMessage('ES256', publicKey, payload, derToP1363(readFileSync(sigFile), 32)), true);
  });
});
