// A VM's console: the guest's stdout and stderr, which dom0 may read (like `xl console`).
// Bounded: only the last `capacity` bytes are kept; older ones are dropped and counted.

export class ConsoleLog {
  readonly #capacity: number;
  #chunks: Buffer[] = [];
  #bytes = 0;
  #dropped = 0;

  constructor(capacity = 64 * 1024) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError('console capacity must be a positive integer');
    this.#capacity = capacity;
  }

  append(chunk: Buffer): void {
    const kept = chunk.length > this.#capacity ? chunk.subarray(chunk.length - this.#capacity) : chunk;
    this.#dropped += chunk.length - kept.length;
    this.#chunks.push(Buffer.from(kept));
    this.#bytes += kept.length;
    while (this.#bytes > this.#capacity) {
      const first = this.#chunks[0] as Buffer;
      const excess = this.#bytes - this.#capacity;
      if (first.length <= excess) {
        this.#chunks.shift();
        this.#bytes -= first.length;
        this.#dropped += first.length;
      } else {
        this.#chunks[0] = first.subarray(excess);
        this.#bytes -= excess;
        this.#dropped += excess;
      }
    }
  }

  /** The kept bytes as text (invalid UTF-8 shown as U+FFFD). */
  text(): string {
    return Buffer.concat(this.#chunks).toString('utf8');
  }

  get droppedBytes(): number {
    return this.#dropped;
  }
}
