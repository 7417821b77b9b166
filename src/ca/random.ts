// Random bytes for the hot path, drawn from a buffer filled by the CSPRNG a few KiB at a
// time: each receipt needs a jti, a certificate serial and a certificate nonce, and one
// randomFillSync per 16 KiB costs far less than three small randomBytes calls per receipt.
// The bytes are the same CSPRNG output either way; each is handed out exactly once.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 16 * 1024;

export class RandomPool {
  readonly #pool = Buffer.allocUnsafe(POOL_BYTES);
  #offset = POOL_BYTES;

  /** `n` fresh random bytes (a copy the caller owns), n ≤ 1024. */
  take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    this.into(out, 0, n);
    return out;
  }

  /** Writes `n` fresh random bytes into `target` at `offset`, n ≤ 1024. */
  into(target: Buffer, offset: number, n: number): void {
    if (!Number.isInteger(n) || n <= 0 || n > 1024) throw new RangeError('take 1..1024 bytes');
    if (offset < 0 || offset + n > target.length) throw new RangeError('the random bytes do not fit');
    if (this.#offset + n > POOL_BYTES) {
      randomFillSync(this.#pool);
      this.#offset = 0;
    }
    this.#pool.copy(target, offset, this.#offset, this.#offset + n);
    this.#pool.fill(0, this.#offset, this.#offset + n); // handed out once: forget it here
    this.#offset += n;
  }
}

/** One pool per thread (module state is per thread). */
export const random = new RandomPool();
