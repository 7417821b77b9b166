// When a VM's guest reached each point of its boot, as its backend saw it on the channel
// (times only, never a message's content): `host-key`, `ready`, `certificate-installed`,
// and when the guest ended. Backends, benchmarks and tests wait on these events.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { VmChannelMessage } from '../hypervisor/index.js';

/** Guest messages whose arrival the backend notes (times only; never their content). */
export type GuestEvent = 'host-key' | 'ready' | 'certificate-installed';
const GUEST_EVENTS: readonly string[] = ['host-key', 'ready', 'certificate-installed'];

export interface Timeline {
  /** performance.now() when the guest (process or QEMU) was spawned. */
  readonly spawnedAt: number;
  /** Milliseconds after spawnedAt. */
  readonly 'host-key'?: number;
  readonly ready?: number;
  readonly 'certificate-installed'?: number;
  readonly exited?: number;
}

export class GuestTimeline {
  readonly spawnedAt = performance.now();
  readonly #events = new Map<string, number>();
  readonly #waiters = new Set<() => void>();
  /** How the guest ended (e.g. its exit code), once it did. */
  #ended: string | undefined;

  /** Notes the first message of each event type the guest sent (after framing). */
  observe(m: VmChannelMessage): void {
    if (GUEST_EVENTS.includes(m.type) && !this.#events.has(m.type)) this.#note(m.type);
  }

  /** The guest ended; `how` is shown to waiters (e.g. `1`, `SIGKILL`). */
  ended(how: string): void {
    if (this.#ended !== undefined) return;
    this.#ended = how;
    this.#note('exited');
  }

  get hasEnded(): boolean {
    return this.#ended !== undefined;
  }

  snapshot(): Timeline {
    return { spawnedAt: this.spawnedAt, ...Object.fromEntries(this.#events) };
  }

  /** Resolves (ms after spawn) when the guest sent `event`; VM_BOOT_FAILED if it ends first, TIMEOUT after `timeoutMs`. */
  waitFor(event: GuestEvent, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const at = this.#events.get(event);
        if (at !== undefined) {
          resolve(at);
          return true;
        }
        if (this.#ended !== undefined) {
          reject(new TrustlaunchError('VM_BOOT_FAILED', `the guest exited (${this.#ended}) before ${event}`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new TrustlaunchError('TIMEOUT', `no ${event} from the guest within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (): void => {
        if (check()) {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
        }
      };
      this.#waiters.add(waiter);
    });
  }

  #note(event: string): void {
    this.#events.set(event, performance.now() - this.spawnedAt);
    for (const w of [...this.#waiters]) w();
  }
}
