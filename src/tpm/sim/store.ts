// Where a TPM engine's state lives. The engine only sees `load`/`store`; the `sim` device
// keeps it in one file, the `pci-nvstore` device in its storage-only device.
import { chmodSync, closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync, unlinkSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface StateStore {
  /** The stored bytes, or undefined when nothing was ever stored. */
  load(): Promise<Uint8Array | undefined>;
  /** Replaces the stored bytes as one atomic step. */
  store(bytes: Uint8Array): Promise<void>;
}

/** Keeps the state in memory (tests, and engines whose owner persists elsewhere). */
export class MemoryStateStore implements StateStore {
  #bytes: Uint8Array | undefined;
  constructor(initial?: Uint8Array) {
    this.#bytes = initial === undefined ? undefined : Uint8Array.from(initial);
  }
  load(): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#bytes === undefined ? undefined : Uint8Array.from(this.#bytes));
  }
  store(bytes: Uint8Array): Promise<void> {
    this.#bytes = Uint8Array.from(bytes);
    return Promise.resolve();
  }
}

/**
 * One file, mode 0600, replaced atomically: write a temporary file beside it, fsync,
 * rename over the old one, fsync the directory. A crash leaves the old or the new state.
 */
export class FileStateStore implements StateStore {
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }

  load(): Promise<Uint8Array | undefined> {
    try {
      return Promise.resolve(readFileSync(this.path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return Promise.resolve(undefined);
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  store(bytes: Uint8Array): Promise<void> {
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${randomBytes(6).toString('hex')}.tmp`);
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      unlinkSync(tmp);
      throw e;
    }
    closeSync(fd);
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.path);
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    return Promise.resolve();
  }
}
