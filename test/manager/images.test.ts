// Images on both databases: blobs are streamed, checked against their digest and stored
// atomically; raw images and QEMU bundles get names; blobs no image uses are collected.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, it } from 'node:test';
import { MANAGER_NAMESPACE, managerMigrations } from '../../src/manager/db/migrations.js';
import type { ManagerSchema } from '../../src/manager/db/schema.js';
import { BlobStore } from '../../src/manager/images/blob-store.js';
import { encodeManifest, manifestDigest, parseManifest } from '../../src/manager/images/bundle.js';
import { ImageCatalog, readManifest } from '../../src/manager/images/catalog.js';
import { sha256Digest, type Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { forEachDatabase } from '../support/databases.js';
import { tempDir } from '../support/system.js';

const stream = (...chunks: Buffer[]): Readable => Readable.from(chunks);

forEachDatabase('manager images', (open) => {
  let tmp: { path: string; dispose: () => void };
  let blobs: BlobStore;
  beforeEach(async () => {
    tmp = tempDir('tl-images-');
    blobs = new BlobStore(join(tmp.path, 'images'));
    await blobs.init();
  });
  afterEach(() => tmp.dispose());
  const catalog = async (max = 1 << 20) => new ImageCatalog((await open<ManagerSchema>(managerMigrations, MANAGER_NAMESPACE)).db, blobs, max);
  const put = async (c: ImageCatalog, bytes: Buffer): Promise<Digest> => (await c.putBlob(stream(bytes), sha256Digest(bytes))).digest;

  it('stores a blob under sha256/<hex> with exactly its bytes, from a stream in many chunks', async () => {
    const c = await catalog();
    const parts = Array.from({ length: 50 }, () => randomBytes(1000));
    const whole = Buffer.concat(parts);
    const stored = await c.putBlob(stream(...parts), sha256Digest(whole));
    assert.deepEqual(stored, { digest: sha256Digest(whole), size: whole.length });
    assert.deepEqual(readFileSync(blobs.path(stored.digest)), whole);
    assert.equal(await c.blobSize(stored.digest), whole.length);
    assert.deepEqual(readdirSync(join(blobs.root, 'tmp')), [], 'no temporary file remains');
  });

  it('refuses bytes that do not hash to the announced digest, keeping nothing', async () => {
    const c = await catalog();
    const bytes = randomBytes(4096);
    const wrong = sha256Digest(Buffer.concat([bytes, Buffer.from([0])]));
    await assert.rejects(c.putBlob(stream(bytes), wrong), (e) => isTrustlaunchError(e, 'BLOB_DIGEST_MISMATCH') && e.detail?.['actual'] === sha256Digest(bytes));
    assert.equal(existsSync(blobs.path(wrong)), false);
    assert.equal(existsSync(blobs.path(sha256Digest(bytes))), false);
    assert.equal(await c.blobSize(wrong), undefined);
    assert.deepEqual(readdirSync(join(blobs.root, 'tmp')), []);
  });

  it('refuses a blob over the size bound while streaming, keeping nothing', async () => {
    const c = await catalog(10_000);
    const bytes = randomBytes(10_001);
    await assert.rejects(c.putBlob(stream(bytes.subarray(0, 6000), bytes.subarray(6000)), sha256Digest(bytes)), (e) => isTrustlaunchError(e, 'BODY_TOO_LARGE'));
    assert.equal(existsSync(blobs.path(sha256Digest(bytes))), false);
    assert.deepEqual(readdirSync(join(blobs.root, 'tmp')), []);
  });

  it('a source that fails midway leaves no blob and no temporary file', async () => {
    const c = await catalog();
    const failing = new Readable({
      read() {
        this.push(randomBytes(100));
        this.destroy(new Error('connection reset'));
      },
    });
    await assert.rejects(c.putBlob(failing, sha256Digest('anything')), /connection reset/);
    assert.deepEqual(readdirSync(join(blobs.root, 'sha256')), []);
    assert.deepEqual(readdirSync(join(blobs.root, 'tmp')), []);
  });

  it('names raw images; the same content twice is idempotent, other content needs replace', async () => {
    const c = await catalog();
    const one = await put(c, Buffer.from('guest one'));
    const two = await put(c, Buffer.from('guest two'));
    const image = await c.create('guest', { raw: one }, 'admin');
    assert.deepEqual({ name: image.name, digest: image.digest, kind: image.kind, size: image.size }, { name: 'guest', digest: one, kind: 'raw', size: 9 });
    assert.deepEqual(image.parts, [{ role: 'image', digest: one, size: 9 }]);
    assert.equal((await c.create('guest', { raw: one }, 'admin')).digest, one);
    await assert.rejects(c.create('guest', { raw: two }, 'admin'), (e) => isTrustlaunchError(e, 'CONFLICT'));
    assert.equal((await c.resolve('guest')).digest, one);
    await c.create('guest', { raw: two }, 'admin', true);
    assert.equal((await c.resolve('guest')).digest, two);
    assert.equal((await c.resolve(two)).name, 'guest', 'an image is found by digest too');
    assert.equal(existsSync(blobs.path(one)), false, 'the replaced content, used by no image, was collected');
    await assert.rejects(c.resolve('nope'), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    await assert.rejects(c.resolve(one), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
  });

  it('refuses an image whose blob was never uploaded', async () => {
    const c = await catalog();
    await assert.rejects(c.create('ghost', { raw: sha256Digest('never') }, 'admin'), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
    assert.deepEqual(await c.list(), []);
  });

  it('stores a QEMU bundle: each part content-addressed, the canonical manifest as a blob whose digest is the image', async () => {
    const c = await catalog();
    const kernel = await put(c, randomBytes(3000));
    const initrd = await put(c, randomBytes(2000));
    const cmdline = await put(c, Buffer.from('console=ttyS0 quiet panic=-1'));
    const manifest = { kernel, initrd, cmdline };
    const image = await c.create('debian', { bundle: manifest }, 'admin');
    assert.equal(image.kind, 'bundle');
    assert.equal(image.digest, manifestDigest(manifest));
    assert.deepEqual(image.parts.map((p) => p.role), ['manifest', 'kernel', 'initrd', 'cmdline']);
    const manifestBytes = readFileSync(blobs.path(image.digest));
    assert.equal(manifestBytes.toString(), `{"cmdline":"${cmdline}","initrd":"${initrd}","kernel":"${kernel}"}`, 'the shape build-guest.sh writes to manifest.json');
    assert.deepEqual(await readManifest(blobs, image.digest), manifest);
    assert.equal(image.size, 3000 + 2000 + 28 + manifestBytes.length);
  });

  it('refuses a bundle whose cmdline is longer than a kernel command line can be', async () => {
    const c = await catalog();
    const kernel = await put(c, randomBytes(10));
    const cmdline = await put(c, Buffer.alloc(5000, 0x61));
    await assert.rejects(c.create('bad', { bundle: { kernel, cmdline } }, 'admin'), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
  });

  it('parses only canonical manifests', () => {
    const kernel = sha256Digest('k');
    assert.deepEqual(parseManifest(encodeManifest({ kernel })), { kernel });
    for (const bad of [`{ "kernel":"${kernel}"}`, `{"kernel":"${kernel}","x":1}`, '{}', 'null', '[', `{"kernel":"${kernel}"}\n`]) {
      assert.throws(() => parseManifest(Buffer.from(bad)), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'), bad);
    }
  });

  it('removing an image collects the blobs no other image uses', async () => {
    const c = await catalog();
    const shared = await put(c, randomBytes(100));
    const own = await put(c, randomBytes(100));
    await c.create('a', { raw: shared }, 'admin');
    await c.create('b', { bundle: { kernel: shared, initrd: own } }, 'admin');
    const b = await c.resolve('b');
    await c.remove('b');
    assert.equal(existsSync(blobs.path(shared)), true, 'still used by a');
    assert.equal(existsSync(blobs.path(own)), false);
    assert.equal(existsSync(blobs.path(b.digest)), false, 'the manifest went too');
    await c.remove('a');
    assert.deepEqual(readdirSync(join(blobs.root, 'sha256')), []);
    await assert.rejects(c.remove('a'), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
  });
});
