// The mini-domain image: the agent's own code as one canonical archive. Same files →
// same bytes (so the digest names the code); anything not canonical, oversized or
// malformed is MINIDOMAIN_IMAGE_INVALID; the loader refuses a well-formed archive that is
// not the agent this process runs, so the gate's digest and the running code agree.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { AGENT_DIR, checkMeasuredImage, installedImage, installedImageDigest, packImage, readAgentSources, unpackImage } from '../../../src/node/minidomain/image.js';

void describe('mini-domain image', () => {
  void it('is the archive of the agent sources, deterministic, and unpacks to them', () => {
    const files = readAgentSources(AGENT_DIR);
    assert.ok(files.some((f) => f.path === 'agent.ts'));
    assert.ok(files.some((f) => f.path === 'image.ts'));
    const image = installedImage();
    assert.deepEqual(packImage([...files].reverse()), image);
    assert.equal(installedImageDigest(), sha256Digest(image));
    assert.deepEqual(unpackImage(image).map((f) => f.path), files.map((f) => f.path));
    checkMeasuredImage(image);
  });

  void it('the loader refuses any other archive, even a well-formed one', () => {
    const files = readAgentSources(AGENT_DIR);
    const changed = files.map((f) => (f.path === 'agent.ts' ? { path: f.path, data: Buffer.concat([f.data, Buffer.from('\n// tampered\n')]) } : f));
    assert.throws(() => checkMeasuredImage(packImage(changed)), (e) => isTrustlaunchError(e, 'MINIDOMAIN_IMAGE_INVALID') && /not the agent code/.test(e.message));
    assert.throws(() => checkMeasuredImage(packImage(files.slice(1))), (e) => isTrustlaunchError(e, 'MINIDOMAIN_IMAGE_INVALID'));
  });

  void it('rejects non-canonical, malformed and oversized archives with one code (property)', () => {
    const image = installedImage();
    const pretty = Buffer.from(JSON.stringify(JSON.parse(image.toString('utf8')), null, 1));
    assert.throws(() => unpackImage(pretty), (e) => isTrustlaunchError(e, 'MINIDOMAIN_IMAGE_INVALID') && /canonical/.test(e.message));
    assert.throws(() => unpackImage(Buffer.from('{"format":"trustlaunch-minidomain/1","files":[{"path":"../x","data":""}]}')), (e) => isTrustlaunchError(e, 'MINIDOMAIN_IMAGE_INVALID'));
    assert.throws(() => unpackImage(Buffer.alloc(9 * 1024 * 1024)), (e) => isTrustlaunchError(e, 'MINIDOMAIN_IMAGE_INVALID'));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.nat(image.length - 1), fc.integer({ min: 1, max: 255 }), (junk, at, flip) => {
        for (const bytes of [junk, Buffer.concat([image.subarray(0, at), Buffer.from([(image[at] as number) ^ flip]), image.subarray(at + 1)])]) {
          try {
            const files = unpackImage(bytes);
            // A mutation that still parses must still be canonical: packing gives the same bytes.
            assert.deepEqual(packImage(files), Buffer.from(bytes));
          } catch (e) {
            assert.ok(isTrustlaunchError(e, 'MINIDOMAIN_IMAGE_INVALID'), String(e));
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
