import fc from 'fast-check';
import { calculateJwkThumbprint } from 'jose';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { jwkThumbprint, spkiFingerprint, sshFingerprint } from '../../src/crypto/fingerprints.js';
import {
  ecPublicKeyFromXY,
  ecPublicKeyXY,
  exportPrivateKeyPem,
  exportPublicJwk,
  exportPublicKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  importPublicJwk,
  importPublicKeyPem,
  rsaPublicKeyFromModulus,
} from '../../src/crypto/keys.js';
import { formatSshPublicKey, parseSshPublicKey } from '../../src/crypto/ssh-keys.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { tempDir } from '../support/system.js';
import { run } from './support.js';

const isMalformedKey = (e: unknown): boolean => isTrustlaunchError(e, 'MALFORMED_KEY');

function someKeys(): KeyObject[] {
  return [
    generateKeyPair('ed25519').publicKey,
    generateKeyPair('ecdsa-p256').publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
  ];
}

describe('key formats', () => {
  it('round-trips PEM (SPKI / PKCS#8) and JWK for every supported key type', () => {
    for (const type of ['ed25519', 'ecdsa-p256'] as const) {
      for (let i = 0; i < 20; i++) {
        const { publicKey, privateKey } = generateKeyPair(type);
        assert.ok(importPublicKeyPem(exportPublicKeyPem(publicKey)).equals(publicKey));
        assert.ok(importPrivateKeyPem(exportPrivateKeyPem(privateKey)).equals(privateKey));
        assert.ok(importPublicJwk(exportPublicJwk(publicKey)).equals(publicKey));
        assert.deepEqual(exportPublicJwk(privateKey), exportPublicJwk(publicKey));
      }
    }
    for (const key of someKeys()) {
      assert.ok(importPublicKeyPem(exportPublicKeyPem(key)).equals(key));
      assert.ok(importPublicJwk(JSON.parse(JSON.stringify(exportPublicJwk(key)))).equals(key));
    }
  });

  it('refuses other PEM blocks, key types and sizes with MALFORMED_KEY', () => {
    const { privateKey } = generateKeyPair('ecdsa-p256');
    const privatePem = exportPrivateKeyPem(privateKey);
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey;
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey;
    const x25519 = generateKeyPairSync('x25519').publicKey;
    const rsaE3 = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).publicKey;
    for (const pem of [
      privatePem,
      exportPublicKeyPem(privateKey) + exportPublicKeyPem(privateKey),
      generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
      ...[rsa1024, k1, p521, x25519, rsaE3].map((k) => k.export({ type: 'spki', format: 'pem' }).toString()),
      '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
      'x'.repeat(20_000),
    ]) {
      assert.throws(() => importPublicKeyPem(pem), isMalformedKey);
    }
    assert.throws(() => importPrivateKeyPem(exportPublicKeyPem(privateKey)), isMalformedKey);
    for (const jwk of [
      { ...exportPublicJwk(privateKey), d: 'AAAA' },
      { kty: 'oct', k: 'AAAA' },
      { kty: 'EC', crv: 'P-521', x: 'AA', y: 'AA' },
      { kty: 'OKP', crv: 'X25519', x: exportPublicJwk(generateKeyPair('ed25519').publicKey) },
      { ...exportPublicJwk(privateKey), x: `${(exportPublicJwk(privateKey) as { x: string }).x}=` },
      { ...exportPublicJwk(privateKey), y: (exportPublicJwk(privateKey) as { x: string }).x },
      null,
      [],
      'jwk',
    ]) {
      assert.throws(() => importPublicJwk(jwk), isMalformedKey, JSON.stringify(jwk));
    }
  });

  it('imports TPM RSA moduli (exponent 0 = 65537) and ECC points, padding short coordinates', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    const n = Buffer.from(rsa.export({ format: 'jwk' }).n as string, 'base64url');
    assert.ok(rsaPublicKeyFromModulus(n).equals(rsa));
    assert.ok(rsaPublicKeyFromModulus(n, 65537).equals(rsa));
    assert.throws(() => rsaPublicKeyFromModulus(n, 3), isMalformedKey);
    assert.throws(() => rsaPublicKeyFromModulus(n.subarray(1)), isMalformedKey);
    assert.throws(() => rsaPublicKeyFromModulus(Buffer.alloc(128, 0xff)), isMalformedKey);

    for (const curve of ['P-256', 'P-384'] as const) {
      const key = generateKeyPairSync('ec', { namedCurve: curve }).publicKey;
      const { x, y } = ecPublicKeyXY(key);
      assert.ok(ecPublicKeyFromXY(curve, x, y).equals(key));
      const offCurve = Buffer.from(y);
      offCurve[offCurve.length - 1] = (offCurve[offCurve.length - 1] as number) ^ 1;
      assert.throws(() => ecPublicKeyFromXY(curve, x, offCurve), isMalformedKey);
      assert.throws(() => ecPublicKeyFromXY(curve, Buffer.concat([Buffer.from([1]), x]), y), isMalformedKey);
    }
    // a point whose x starts with a zero byte, given as TPM2B with the zero stripped
    let found = false;
    for (let i = 0; i < 5000 && !found; i++) {
      const key = generateKeyPair('ecdsa-p256').publicKey;
      const { x, y } = ecPublicKeyXY(key);
      if (x[0] !== 0) continue;
      assert.ok(ecPublicKeyFromXY('P-256', x.subarray(1), y).equals(key));
      found = true;
    }
    assert.ok(found);
  });
});

describe('OpenSSH public keys and fingerprints (ssh-keygen and openssl as oracles)', () => {
  const dir = tempDir('tl-keys-');
  after(() => dir.dispose());

  it('formats keys that ssh-keygen reads, with the fingerprint ssh-keygen prints', () => {
    for (const type of ['ed25519', 'ecdsa-p256'] as const) {
      for (let i = 0; i < 3; i++) {
        const { publicKey } = generateKeyPair(type);
        const line = formatSshPublicKey(publicKey, 'vm-1@trustlaunch');
        const file = join(dir.path, `k${type}${i}.pub`);
        writeFileSync(file, `${line}\n`);
        const out = run('ssh-keygen', ['-lf', file]);
        assert.equal(out.status, 0, out.stderr);
        const [bits, fp, comment] = out.stdout.trim().split(' ');
        assert.equal(fp, sshFingerprint(publicKey));
        assert.equal(fp, sshFingerprint(line));
        assert.equal(comment, 'vm-1@trustlaunch');
        assert.equal(bits, '256');
        if (type === 'ecdsa-p256') {
          // ssh-keygen converts our line to SPKI PEM, which is our key (OpenSSH 9.2 cannot do this for Ed25519)
          const spki = run('ssh-keygen', ['-e', '-m', 'PKCS8', '-f', file]);
          assert.ok(importPublicKeyPem(spki.stdout).equals(publicKey));
        }
      }
    }
  });

  it('parses keys ssh-keygen generated, and ssh-keygen derives our public line from our private key', () => {
    for (const [t, bits] of [['ed25519', '256'], ['ecdsa', '256']] as const) {
      const file = join(dir.path, `gen-${t}`);
      assert.equal(run('ssh-keygen', ['-q', '-t', t, '-b', bits, '-N', '', '-C', 'made by ssh-keygen', '-f', file]).status, 0);
      const line = readFileSync(`${file}.pub`, 'utf8');
      const parsed = parseSshPublicKey(line);
      assert.equal(parsed.comment, 'made by ssh-keygen');
      assert.equal(formatSshPublicKey(parsed.key, parsed.comment), line.trim());
      assert.equal(sshFingerprint(line), run('ssh-keygen', ['-lf', `${file}.pub`]).stdout.split(' ')[1]);
    }
    const { publicKey, privateKey } = generateKeyPair('ecdsa-p256');
    const keyFile = join(dir.path, 'ours.pem');
    writeFileSync(keyFile, exportPrivateKeyPem(privateKey), { mode: 0o600 });
    chmodSync(keyFile, 0o600);
    const derived = run('ssh-keygen', ['-y', '-f', keyFile]);
    assert.equal(derived.status, 0, derived.stderr);
    assert.equal(derived.stdout.trim(), formatSshPublicKey(publicKey));
  });

  it('refuses ssh-rsa, DSA, other ECDSA curves, certificates and malformed lines with MALFORMED_KEY', () => {
    const refused: string[] = [];
    for (const [t, bits] of [['rsa', '2048'], ['dsa', '1024'], ['ecdsa', '384'], ['ecdsa', '521']] as const) {
      const file = join(dir.path, `refuse-${t}${bits}`);
      const r = run('ssh-keygen', ['-q', '-t', t, '-b', bits, '-N', '', '-f', file]);
      if (r.status !== 0) throw new Error(`ssh-keygen -t ${t}: ${r.stderr}`);
      refused.push(readFileSync(`${file}.pub`, 'utf8'));
    }
    const good = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
    const [, b64] = good.split(' ') as [string, string];
    const blob = Buffer.from(b64, 'base64');
    refused.push(
      `ecdsa-sha2-nistp256 ${b64}`, // type on the line differs from the blob
      `ssh-ed25519 ${b64.slice(0, -4)}`, // truncated
      `ssh-ed25519 ${Buffer.concat([blob, Buffer.from([0])]).toString('base64')}`, // trailing byte
      `ssh-ed25519-cert-v01@openssh.com ${b64}`,
      `ssh-ed25519 ${b64}\nssh-ed25519 ${b64}`,
      'ssh-ed25519',
      '',
    );
    for (const line of refused) assert.throws(() => parseSshPublicKey(line), isMalformedKey, line.slice(0, 40));
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.uint8Array({ maxLength: 200 }), (s, bytes) => {
        for (const line of [s, `ssh-ed25519 ${Buffer.from(bytes).toString('base64')}`, `ecdsa-sha2-nistp256 ${Buffer.from(bytes).toString('base64')}`]) {
          try {
            parseSshPublicKey(line);
          } catch (e) {
            if (!isMalformedKey(e)) return false;
          }
        }
        return true;
      }),
      { numRuns: 500 },
    );
  });

  it('computes sha256:<hex> of the SPKI as openssl does, and RFC 7638 thumbprints as jose does', async () => {
    for (const key of someKeys()) {
      const pem = join(dir.path, 'spki.pem');
      writeFileSync(pem, exportPublicKeyPem(key));
      const derFile = join(dir.path, 'spki.der');
      const converted = run('openssl', ['pkey', '-pubin', '-in', pem, '-outform', 'DER', '-out', derFile]);
      assert.equal(converted.status, 0, converted.stderr);
      const hex = run('openssl', ['dgst', '-sha256', '-r', derFile]).stdout.split(' ')[0];
      assert.equal(spkiFingerprint(key), `sha256:${hex}`);
      assert.equal(spkiFingerprint(key), `sha256:${createHash('sha256').update(readFileSync(derFile)).digest('hex')}`);
      assert.equal(jwkThumbprint(key), await calculateJwkThumbprint(exportPublicJwk(key), 'sha256'));
    }
    // RFC 7638 §3.1 example
    const rfcKey = importPublicJwk({
      kty: 'RSA',
      n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
      e: 'AQAB',
      alg: 'RS256',
      kid: '2011-04-29',
    });
    assert.equal(jwkThumbprint(rfcKey), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });
});
