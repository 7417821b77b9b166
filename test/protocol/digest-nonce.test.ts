import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { parseDigest, sha256Digest, sha256File, sha256Stream, digestBytes } from '../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { newNonce, parseNonce, nonceBytes } from '../../src/protocol/nonce.js';
import { fromBase64url } from '../../src/protocol/base64url.js';
import { tempDir } from '../support/system.js';

describe('digests', () => {
  it('formats and parses sha256:<hex>', () => {
    const d = sha256Digest('abc');
    assert.equal(d, 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(parseDigest(d), d);
    assert.equal(digestBytes(d).length, 32);
  });

  it('rejects every other form with MALFORMED_DIGEST', () => {
    const good = sha256Digest('abc');
    for (const bad of [good.toUpperCase(), good.slice(0, -1), `${good}0`, good.replace('sha256:', 'sha512:'), good.slice(7), '']) {
      assert.throws(() => parseDigest(bad), (e) => isTrustlaunchError(e, 'MALFORMED_DIGEST'));
    }
  });

  it('hashes files and streams in pieces with the same result as one update', async () => {
    const dir = tempDir();
    try {
      const data = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
      const file = join(dir.path, 'blob');
      writeFileSync(file, data);
      const expected = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      assert.deepEqual(await sha256File(file), { digest: expected, size: data.length });
      const pieces = Readable.from([data.subarray(0, 5), data.subarray(5, 1 << 20), data.subarray(1 << 20)]);
      assert.deepEqual(await sha256Stream(pieces), { digest: expected, size: data.length });
    } finally {
      dir.dispose();
    }
  });
});

describe('nonces', () => {
  it('are 32 random bytes as 43 base64url characters', () => {
    const a = newNonce();
    const b = newNonce();
    assert.equal(a.length, 43);
    assert.notEqual(a, b);
    assert.equal(nonceBytes(a).length, 32);
    assert.equal(parseNonce(a), a);
  });

  it('rejects padding, wrong length, other alphabets and non-canonical tails', () => {
    const n = newNonce();
    const nonCanonicalTail = `${n.slice(0, 42)}B`; // last char must carry two zero bits
    for (const bad of [`${n}=`, n.slice(1), `${n}A`, n.replace(/[A-Za-z]/, '+'), nonCanonicalTail]) {
      assert.throws(() => parseNonce(bad), (e) => isTrustlaunchError(e, 'MALFORMED_NONCE'));
    }
  });

  it('base64url decoding is strict', () => {
    assert.throws(() => fromBase64url('AA=='), (e) => isTrustlaunchError(e));
    assert.throws(() => fromBase64url('AB'), (e) => isTrustlaunchError(e)); // non-canonical
    assert.deepEqual(fromBase64url('AA'), Buffer.from([0]));
  });
});
