// SSH ports for VMs: each VM's sshd (process VMs) or QEMU `hostfwd` (QEMU VMs) listens on
// its own port on 127.0.0.1. A port
// is handed out only when (1) no VM of this backend has it, (2) no VM under the same
// runtime root has it (an O_EXCL reservation file, so node processes sharing a root never
// collide), and (3) nothing listens on it now (a probe bind). The default range lies below
// Linux's ephemeral range (32768–60999), so the kernel never picks one of these ports for
// an outgoing connection between the probe and the bind.
import { randomInt } from 'node:crypto';
import { createServer } from 'node:net';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { RuntimeDir, VmDir } from './runtime-dir.js';

export interface PortRange {
  /** First port (inclusive). */
  readonly from: number;
  /** Last port (inclusive). */
  readonly to: number;
}

export const DEFAULT_PORT_RANGE: PortRange = Object.freeze({ from: 20000, to: 31999 });
const ATTEMPTS = 64;

function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export class PortAllocator {
  readonly #range: PortRange;
  readonly #dir: RuntimeDir;
  readonly #held = new Set<number>();

  constructor(dir: RuntimeDir, range: PortRange = DEFAULT_PORT_RANGE) {
    if (!Number.isInteger(range.from) || !Number.isInteger(range.to) || range.from < 1024 || range.to > 65535 || range.from > range.to) {
      throw new RangeError('a port range is from..to within 1024..65535');
    }
    this.#range = range;
    this.#dir = dir;
  }

  /** A free port, reserved for `vm` until `release`. CAPACITY_EXCEEDED when none is found. */
  async allocate(vm: VmDir): Promise<number> {
    const size = this.#range.to - this.#range.from + 1;
    const start = randomInt(size);
    for (let i = 0; i < Math.min(ATTEMPTS, size); i++) {
      const port = this.#range.from + ((start + i) % size);
      if (this.#held.has(port)) continue;
      this.#held.add(port);
      if (!this.#dir.reservePort(port, vm)) {
        this.#held.delete(port);
        continue;
      }
      if (await probe(port)) return port;
      this.release(port);
    }
    throw new TrustlaunchError('CAPACITY_EXCEEDED', `no free SSH port in ${this.#range.from}..${this.#range.to}`);
  }

  release(port: number): void {
    if (!this.#held.delete(port)) return;
    this.#dir.releasePort(port);
  }

  get held(): readonly number[] {
    return [...this.#held];
  }
}
