// What every TPM transport does: carry one complete command to the TPM and one complete
// response back (Part 1 §18.2 framing: tag ‖ UINT32 size ‖ code ‖ …), one command at a
// time. Commands from concurrent callers wait in a bounded FIFO queue; the timeout covers
// a command's own exchange, not its wait in the queue.
import { HEADER_SIZE, MAX_TPM_MESSAGE } from './constants.js';
import { transportError } from './errors.js';

export interface TpmTransport {
  /** A line for logs: "swtpm tcp 127.0.0.1:2321", "/dev/tpmrm0". */
  readonly description: string;
  /** Sends `command` (a whole TPM command) and resolves with the whole response. Queued: one command in flight. */
  transmit(command: Uint8Array, timeoutMs: number): Promise<Buffer>;
  /** Releases the transport for good; commands still queued fail with TPM_TRANSPORT_ERROR. */
  close(): Promise<void>;
}

/** The UINT32 size in a TPM header, checked against the framing rules before anything is allocated. */
export function framedSize(header: Uint8Array, what: string): number {
  if (header.length < HEADER_SIZE) throw transportError(`${what}: ${header.length} bytes are shorter than a TPM header`);
  const size = Buffer.from(header.buffer, header.byteOffset, header.byteLength).readUInt32BE(2);
  if (size < HEADER_SIZE || size > MAX_TPM_MESSAGE) throw transportError(`${what}: header size ${size} outside ${HEADER_SIZE}..${MAX_TPM_MESSAGE}`);
  return size;
}

/**
 * Collects stream chunks into exactly one response: the header's size says where it ends,
 * a size outside the bounds or a byte beyond the end is a transport error (a TPM answers
 * each command once, so anything extra means the stream is out of step).
 */
export class ResponseAssembler {
  #chunks: Buffer[] = [];
  #received = 0;
  #expected: number | undefined;

  /** Adds a chunk; returns the response once complete. Throws TPM_TRANSPORT_ERROR on a framing violation. */
  push(chunk: Buffer): Buffer | undefined {
    this.#chunks.push(chunk);
    this.#received += chunk.length;
    if (this.#expected === undefined && this.#received >= HEADER_SIZE) {
      this.#expected = framedSize(Buffer.concat(this.#chunks).subarray(0, HEADER_SIZE), 'response');
    }
    if (this.#expected === undefined || this.#received < this.#expected) return undefined;
    if (this.#received > this.#expected) throw transportError(`response: ${this.#received - this.#expected} bytes beyond the ${this.#expected} the header announced`);
    return Buffer.concat(this.#chunks, this.#received);
  }
}

/** A FIFO of async jobs, at most one running; at most `limit` waiting. */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #waiting = 0;
  readonly #limit: number;

  constructor(limit = 1024) {
    this.#limit = limit;
  }

  get waiting(): number {
    return this.#waiting;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#waiting >= this.#limit) return Promise.reject(transportError(`more than ${this.#limit} TPM commands queued`));
    this.#waiting++;
    const start = (): Promise<T> => {
      this.#waiting--;
      return job();
    };
    const result = this.#tail.then(start, start);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

/** Checks a command before it goes out (a caller's bug, hence RangeError): a whole, well-framed TPM command. */
export function checkCommandFraming(command: Uint8Array): void {
  if (command.length < HEADER_SIZE || command.length > MAX_TPM_MESSAGE) throw new RangeError(`a TPM command has ${HEADER_SIZE}..${MAX_TPM_MESSAGE} bytes, got ${command.length}`);
  const size = Buffer.from(command.buffer, command.byteOffset, command.byteLength).readUInt32BE(2);
  if (size !== command.length) throw new RangeError(`command header says ${size} bytes, buffer has ${command.length}`);
}
