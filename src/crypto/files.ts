// Writing and reading key material on disk.
//  - writeFileAtomic: a reader sees the old file or the new one, never a torn write, and the
//    new one survives a crash once we return (temp file in the same directory, fsync,
//    rename, fsync of the directory).
//  - writeSecretFile: the same, mode 0600, and it refuses a target that is a symlink.
//  - readSecretFile: refuses (FILE_INSECURE) symlinks, non-regular files, files owned by
//    another user and files open to group or others, as OpenSSH refuses an "UNPROTECTED
//    PRIVATE KEY FILE": a secret that others could read must be treated as leaked, and a
//    file others could write may not be ours. The checks run on the opened descriptor, so
//    the file cannot be swapped between check and read.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TrustlaunchError } from '../protocol/errors.js';

const SECRET_MODE = 0o600;
const DEFAULT_MAX_SECRET_BYTES = 1 << 20;

/** Replaces `path` atomically and durably with `data`, with permission bits `mode`. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  // O_EXCL | O_NOFOLLOW: the temp name cannot be a file or symlink someone planted.
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await handle.chmod(mode); // the process umask must not loosen or tighten what was asked
    await handle.writeFile(data);
    await handle.sync();
  } catch (e) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw e;
  }
  await handle.close();
  try {
    await rename(temp, path); // rename replaces a symlink at `path` itself, never its target
  } catch (e) {
    await unlink(temp).catch(() => undefined);
    throw e;
  }
  const dirHandle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

/** Writes a secret (private key, token) atomically with mode 0600; refuses when `path` is a symlink. */
export async function writeSecretFile(path: string, data: string | Uint8Array): Promise<void> {
  const existing = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (existing?.isSymbolicLink() === true) throw new TrustlaunchError('FILE_INSECURE', `refusing to write a secret through the symlink ${path}`);
  if (existing !== undefined && !existing.isFile()) throw new TrustlaunchError('FILE_INSECURE', `refusing to replace ${path}: not a regular file`);
  await writeFileAtomic(path, data, SECRET_MODE);
}

/** Reads a secret file written by writeSecretFile; FILE_INSECURE when others could read or change it. */
export async function readSecretFile(path: string, opts: { maxBytes?: number } = {}): Promise<Buffer> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_SECRET_BYTES;
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new TrustlaunchError('FILE_INSECURE', `refusing to read a secret through the symlink ${path}`);
    throw e;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new TrustlaunchError('FILE_INSECURE', `${path} is not a regular file`);
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
      throw new TrustlaunchError('FILE_INSECURE', `${path} is owned by uid ${st.uid}, not by this user`);
    }
    if ((st.mode & 0o077) !== 0) {
      throw new TrustlaunchError('FILE_INSECURE', `${path} has mode ${(st.mode & 0o777).toString(8)}; a secret file must not be open to group or others (chmod 600)`);
    }
    if (st.size > maxBytes) throw new TrustlaunchError('FILE_INSECURE', `${path} is larger than ${maxBytes} bytes`);
    const data = await handle.readFile();
    if (data.length > maxBytes) throw new TrustlaunchError('FILE_INSECURE', `${path} grew beyond ${maxBytes} bytes while being read`);
    return data;
  } finally {
    await handle.close();
  }
}
