// A TPM behind a character device: the kernel's resource manager `/dev/tpmrm0` (or the
// raw `/dev/tpm0`). One write() carries a whole command; read() returns the response,
// which is read until the header's size is complete (a kernel answers in one read; other
// character devices may split it). A read or write blocked in the kernel cannot be
// cancelled, so a timeout fails the command, retires the file handle, and closes it once
// the blocked call returns; the next command opens the device again.
import { open, type FileHandle } from 'node:fs/promises';
import { TrustlaunchError } from '../../protocol/errors.js';
import { MAX_TPM_MESSAGE } from './constants.js';
import { timeoutError, transportError } from './errors.js';
import { checkCommandFraming, ResponseAssembler, SerialQueue, type TpmTransport } from './transport.js';

export const DEFAULT_TPM_DEVICE = '/dev/tpmrm0';

/** PC Client TPMs answer at most 4096 bytes; Linux ≥ 4.20 also serves a longer response over several reads. */
const READ_CHUNK = 4096;

export class DeviceTransport implements TpmTransport {
  readonly description: string;
  readonly path: string;
  readonly #queue = new SerialQueue();
  #handle: FileHandle | undefined;
  #closed = false;

  constructor(path: string = DEFAULT_TPM_DEVICE) {
    this.path = path;
    this.description = `TPM device ${path}`;
  }

  transmit(command: Uint8Array, timeoutMs: number): Promise<Buffer> {
    checkCommandFraming(command);
    return this.#queue.run(() => this.#exchange(command, timeoutMs));
  }

  async #exchange(command: Uint8Array, timeoutMs: number): Promise<Buffer> {
    if (this.#closed) throw transportError(`${this.description} is closed`);
    const work = this.#roundTrip(command);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timeoutError(this.description, timeoutMs)), timeoutMs);
    });
    try {
      return await Promise.race([work, expired]);
    } catch (e) {
      this.#retire(work);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async #roundTrip(command: Uint8Array): Promise<Buffer> {
    const fh = await this.#open();
    try {
      const { bytesWritten } = await fh.write(command, 0, command.length);
      if (bytesWritten !== command.length) throw transportError(`${this.description}: wrote ${bytesWritten} of ${command.length} bytes`);
      const assembler = new ResponseAssembler();
      // A buffer per command: a read retired by a timeout may still complete into its own.
      const chunk = Buffer.allocUnsafe(READ_CHUNK);
      for (let reads = 0; reads <= MAX_TPM_MESSAGE / READ_CHUNK; reads++) {
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) throw transportError(`${this.description}: end of file before a complete response`);
        const response = assembler.push(Buffer.from(chunk.subarray(0, bytesRead)));
        if (response !== undefined) return response;
      }
      throw transportError(`${this.description}: no complete response after ${MAX_TPM_MESSAGE} bytes`);
    } catch (e) {
      if (e instanceof TrustlaunchError) throw e;
      throw transportError(`${this.description}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  }

  async #open(): Promise<FileHandle> {
    if (this.#handle !== undefined) return this.#handle;
    try {
      this.#handle = await open(this.path, 'r+');
    } catch (e) {
      throw transportError(`cannot open ${this.path}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    return this.#handle;
  }

  /** After a failure the device's state is unknown: forget the handle and close it once `work` settles. */
  #retire(work: Promise<unknown>): void {
    const fh = this.#handle;
    this.#handle = undefined;
    if (fh === undefined) return;
    void work.catch(() => undefined).finally(() => fh.close().catch(() => undefined));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#queue
      .run(async () => {
        const fh = this.#handle;
        this.#handle = undefined;
        await fh?.close();
      })
      .catch(() => undefined);
  }
}
