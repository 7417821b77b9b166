// The VM channel (DESIGN.md §3.1, docs/vm-channel.md): a private, message-level link
// between one VM and the hypervisor. The hypervisor creates the pair when it builds the
// VM, keeps one end, and hands the other only to the VM (through its VmCapability, to the
// VM backend that carries it on fd 3 or a virtio-serial port). dom0 never receives either
// end. The carrier and its framing (newline-delimited JSON, 16 KiB lines) belong to the
// VM backends; this module is the in-process endpoint pair both sides program against.

export interface VmChannelMessage {
  readonly v: 1;
  readonly type: string;
  readonly [field: string]: unknown;
}

export interface VmChannelEndpoint {
  /** Sends one message to the other end (delivered asynchronously, in order). Ignored once closed. */
  send(message: VmChannelMessage): void;
  /** Registers a listener for messages from the other end; returns a function that removes it. */
  onMessage(listener: (message: unknown) => void): () => void;
  /** Closes both directions; later sends are dropped. */
  close(): void;
  readonly closed: boolean;
}

/** Messages queued for an end that has no listener yet are kept, up to this many. */
const MAX_PENDING = 256;

class Endpoint implements VmChannelEndpoint {
  peer: Endpoint | undefined;
  readonly #listeners = new Set<(message: unknown) => void>();
  readonly #pending: unknown[] = [];
  #closed = false;

  get closed(): boolean {
    return this.#closed;
  }

  send(message: VmChannelMessage): void {
    if (this.#closed) return;
    // Structured clone: the receiver gets data, never a reference into the sender's objects.
    const copy: unknown = structuredClone(message);
    const peer = this.peer;
    queueMicrotask(() => peer?.deliver(copy));
  }

  deliver(message: unknown): void {
    if (this.#closed) return;
    if (this.#listeners.size === 0) {
      if (this.#pending.length < MAX_PENDING) this.#pending.push(message);
      return;
    }
    for (const l of this.#listeners) l(message);
  }

  onMessage(listener: (message: unknown) => void): () => void {
    this.#listeners.add(listener);
    for (const m of this.#pending.splice(0)) listener(m);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#pending.length = 0;
    if (this.peer !== undefined && !this.peer.closed) this.peer.close();
  }
}

/** A connected pair of endpoints: one for the hypervisor, one for the VM. */
export function createVmChannelPair(): { readonly hypervisorEnd: VmChannelEndpoint; readonly guestEnd: VmChannelEndpoint } {
  const a = new Endpoint();
  const b = new Endpoint();
  a.peer = b;
  b.peer = a;
  return { hypervisorEnd: a, guestEnd: b };
}
