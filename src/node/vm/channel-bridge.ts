// Carries a VM channel (docs/vm-channel.md) over a byte stream: the guest's fd 3 for
// process VMs (a socketpair end held by the hypervisor); the same framing fits the QEMU
// backend's virtio-serial unix socket. Newline-delimited JSON, UTF-8, at most 16 KiB per
// line. From the guest, only a JSON object with `"v": 1` and a string `type` is passed to
// the hypervisor's endpoint; anything else is dropped and counted, and an over-long line
// is discarded up to its newline without being buffered. Towards the guest, a message
// longer than a line, or one more for a guest that leaves 256 KiB unread, is dropped.
import type { Duplex } from 'node:stream';
import type { VmChannelEndpoint, VmChannelMessage } from '../hypervisor/index.js';

export const CHANNEL_MAX_LINE = 16 * 1024;
/** Bytes queued for a guest that does not read its channel; beyond this, messages are dropped. */
export const CHANNEL_MAX_QUEUED = 256 * 1024;

export interface ChannelStats {
  /** Messages passed from the guest to the hypervisor. */
  readonly fromGuest: number;
  /** Lines from the guest dropped (too long, not UTF-8, not JSON, not a v1 message). */
  readonly droppedFromGuest: number;
  readonly toGuest: number;
  /** Messages to the guest dropped (longer than a line may be, or the guest does not read). */
  readonly droppedToGuest: number;
}

export type DropReason = 'too-long' | 'not-utf8' | 'not-json' | 'not-a-message';

/** Splits a byte stream into lines of at most `maxLine` bytes (without the newline). */
export class LineSplitter {
  readonly #maxLine: number;
  #parts: Buffer[] = [];
  #bytes = 0;
  #overlong = false;

  constructor(maxLine = CHANNEL_MAX_LINE) {
    this.#maxLine = maxLine;
  }

  /** Feeds a chunk; calls `line` for each complete line and `overlong` for each discarded one. */
  push(chunk: Buffer, line: (bytes: Buffer) => void, overlong: () => void): void {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const part = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.#overlong || this.#bytes + part.length > this.#maxLine) overlong();
      else line(this.#parts.length === 0 ? Buffer.from(part) : Buffer.concat([...this.#parts, part]));
      this.#reset();
    }
    const rest = chunk.subarray(start);
    if (this.#overlong || this.#bytes + rest.length > this.#maxLine) {
      this.#parts = [];
      this.#bytes = 0;
      this.#overlong = true;
    } else if (rest.length > 0) {
      this.#parts.push(Buffer.from(rest));
      this.#bytes += rest.length;
    }
  }

  #reset(): void {
    this.#parts = [];
    this.#bytes = 0;
    this.#overlong = false;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** One line from the guest → a message for the hypervisor, or why it was dropped. */
export function decodeGuestLine(bytes: Buffer): VmChannelMessage | DropReason {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return 'not-utf8';
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'not-json';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not-a-message';
  const m = value as Record<string, unknown>;
  if (m['v'] !== 1 || typeof m['type'] !== 'string') return 'not-a-message';
  return m as VmChannelMessage;
}

export interface ChannelBridge {
  stats(): ChannelStats;
  /** Stops carrying messages (the stream itself belongs to the caller). */
  close(): void;
}

/**
 * Bridges `stream` (the guest's side of the carrier) and `endpoint` (the guest end of the
 * hypervisor's channel pair). `observe` sees each message the guest sent, after framing.
 */
export function bridgeChannel(stream: Duplex, endpoint: VmChannelEndpoint, observe?: (m: VmChannelMessage) => void, onDrop?: (r: DropReason) => void): ChannelBridge {
  const stats = { fromGuest: 0, droppedFromGuest: 0, toGuest: 0, droppedToGuest: 0 };
  const splitter = new LineSplitter();
  let open = true;
  const dropped = (reason: DropReason): void => {
    stats.droppedFromGuest++;
    onDrop?.(reason);
  };
  const onData = (chunk: Buffer): void => {
    if (!open) return;
    splitter.push(
      chunk,
      (bytes) => {
        const m = decodeGuestLine(bytes);
        if (typeof m === 'string') return dropped(m);
        stats.fromGuest++;
        observe?.(m);
        endpoint.send(m);
      },
      () => dropped('too-long'),
    );
  };
  stream.on('data', onData);
  const stopListening = endpoint.onMessage((message) => {
    if (!open || stream.destroyed || !stream.writable) return;
    const line = `${JSON.stringify(message)}\n`;
    if (Buffer.byteLength(line) - 1 > CHANNEL_MAX_LINE || stream.writableLength > CHANNEL_MAX_QUEUED) {
      stats.droppedToGuest++;
      return;
    }
    stats.toGuest++;
    stream.write(line);
  });
  // A guest that vanished makes writes fail; that is the process's exit to report, not ours.
  stream.on('error', () => undefined);
  return {
    stats: () => ({ ...stats }),
    close: () => {
      open = false;
      stream.off('data', onData);
      stopListening();
    },
  };
}
