// Where a TPM engine's state lives. The engine only sees `load`/`store`; the `sim` device
// keeps it in one file, the `pci-nvstore` device in its storage-only device.
import { readSecretFile, writeSecretFile } from '../../crypto/files.js';

/** A software TPM state is a few KiB (keys, certificates, NV); anything near this is not one. */
const STATE_MAX_BYTES = 1 << 20;

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
 * One file, mode 0600, replaced atomically (writeSecretFile: temporary file beside it,
 * fsync, rename, fsync of the directory), so a crash leaves the old or the new state. It is
 * read only when no one else could read or change it (readSecretFile: FILE_INSECURE).
 */
export class FileStateStore implements StateStore {
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }

  async load(): Promise<Uint8Array | undefined> {
    try {
      return await readSecretFile(this.path, { maxBytes: STATE_MAX_BYTES });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  store(bytes: Uint8Array): Promise<void> {
    return writeSecretFile(this.path, bytes);
  }
}
