// When a VM reached each point of its boot, as its backend saw it on the channel (times
// only, never a message's content): the guest's `host-key`, `ready` and
// `certificate-installed`; the hypervisor's `config` and `host-certificate` going to the
// guest; `ready-reported`, when the hypervisor (and so dom0) learnt that sshd is up —
// the guest's `ready`, held until its certificate is in place when the backend waits for
// it (certificate-gate.ts); and when the guest ended. Backends, benchmarks and tests wait
// on these events.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { VmChannelMessage } from '../hypervisor/index.js';

/** Events a caller may wait for. */
export type GuestEvent = 'host-key' | 'ready' | 'certificate-installed' | 'ready-reported';
const GUEST_MESSAGES: ReadonlySet<string> = new Set(['host-key', 'ready', 'certificate-installed']);
/** Hypervisor → guest messages whose sending is noted, under these names. */
const HOST_MESSAGES: ReadonlyMap<string, string> = new Map([['config', 'config-sent'], ['host-certificate', 'certificate-sent']]);

export interface Timeline {
  /** performance.now() when the guest (process or QEMU) was spawned. */
  readonly spawnedAt: number;
  /** Milliseconds after spawnedAt. */
  readonly 'host-key'?: number;
  readonly ready?: number;
  readonly 'certificate-installed'?: number;
  readonly 'ready-reported'?: number;
  readonly 'config-sent'?: number;
  readonly 'certificate-sent'?: number;
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
    if (GUEST_MESSAGES.has(m.type)) this.note(m.type);
  }

  /** Notes the first message of each noted type the hypervisor sent the guest. */
  sent(m: VmChannelMessage): void {
    const event = HOST_MESSAGES.get(m.type);
    if (event !== undefined) this.note(event);
  }

  /** Notes `event` now, unless it was noted before. */
  note(event: string): void {
    if (this.#events.has(event)) return;
    this.#events.set(event, performance.now() - this.spawnedAt);
    for (const w of [...this.#waiters]) w();
  }

  /** The guest ended; `how` is shown to waiters (e.g. `1`, `SIGKILL`). */
  ended(how: string): void {
    if (this.#ended !== undefined) return;
    this.#ended = how;
    this.note('exited');
  }

  get hasEnded(): boolean {
    return this.#ended !== undefined;
  }

  snapshot(): Timeline {
    return { spawnedAt: this.spawnedAt, ...Object.fromEntries(this.#events) };
  }

  /** Resolves (ms after spawn) when `event` happened; VM_BOOT_FAILED if the guest ends first, TIMEOUT after `timeoutMs`. */
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
}
