import assert from 'node:assert/strict';
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readSecretFile, writeFileAtomic, writeSecretFile } from '../../src/crypto/files.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { tempDir } from '../support/system.js';

const insecure = (e: unknown): boolean => isTrustlaunchError(e, 'FILE_INSECURE');

describe('files', () => {
  const dir = tempDir('tl-files-');
  after(() => dir.dispose());

  it('writes atomically with the requested mode whatever the umask, leaving no temp files', async () => {
    const path = join(dir.path, 'atomic.txt');
    const old = process.umask(0o077);
    try {
      await writeFileAtomic(path, 'one', 0o644);
    } finally {
      process.umask(old);
    }
    assert.equal(readFileSync(path, 'utf8'), 'one');
    assert.equal(statSync(path).mode & 0o777, 0o644);
    await writeFileAtomic(path, Buffer.from('two'), 0o640);
    assert.equal(readFileSync(path, 'utf8'), 'two');
    assert.equal(statSync(path).mode & 0o777, 0o640);
    assert.deepEqual(readdirSync(dir.path).filter((f) => f.endsWith('.tmp')), []);
  });

  it('keeps the old content when the write fails (the directory is gone)', async () => {
    await assert.rejects(writeFileAtomic(join(dir.path, 'missing-dir', 'x'), 'data'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  });

  it('writes secrets 0600 and reads them back', async () => {
    const path = join(dir.path, 'key.pem');
    const old = process.umask(0);
    try {
      await writeSecretFile(path, 'secret');
    } finally {
      process.umask(old);
    }
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal((await readSecretFile(path)).toString(), 'secret');
  });

  it('refuses to write a secret through a symlink and leaves its target untouched', async () => {
    const target = join(dir.path, 'victim');
    writeFileSync(target, 'original');
    const link = join(dir.path, 'link.pem');
    symlinkSync(target, link);
    await assert.rejects(writeSecretFile(link, 'secret'), insecure);
    assert.equal(readFileSync(target, 'utf8'), 'original');
    assert.equal(readlinkSync(link), target);
    const sub = join(dir.path, 'a-directory');
    mkdirSync(sub);
    await assert.rejects(writeSecretFile(sub, 'secret'), insecure);
    assert.ok(lstatSync(sub).isDirectory());
  });

  it('refuses to read secrets open to group or others, through symlinks, non-files, or too large', async () => {
    const path = join(dir.path, 'open.pem');
    await writeSecretFile(path, 'secret');
    for (const mode of [0o640, 0o604, 0o620, 0o602, 0o644]) {
      chmodSync(path, mode);
      await assert.rejects(readSecretFile(path), insecure, mode.toString(8));
    }
    chmodSync(path, 0o400);
    assert.equal((await readSecretFile(path)).toString(), 'secret');
    chmodSync(path, 0o600);
    const link = join(dir.path, 'open-link.pem');
    symlinkSync(path, link);
    await assert.rejects(readSecretFile(link), insecure);
    await assert.rejects(readSecretFile(dir.path), insecure);
    await assert.rejects(readSecretFile(path, { maxBytes: 3 }), insecure);
    if (process.getuid?.() === 0) {
      // as root (the CI machine): a 0600 file owned by someone else is not our secret
      chownSync(path, 65534, 65534);
      await assert.rejects(readSecretFile(path), insecure);
    }
  });
});
