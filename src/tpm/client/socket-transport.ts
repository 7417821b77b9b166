// A TPM reached over a stream socket: swtpm's data channel over TCP (`--server
// type=tcp`) or a unix socket (`--server type=unixio`). The wire carries bare TPM commands
// and responses, nothing else (unlike the Microsoft simulator's framing). One connection
// at a time; it is opened on first use, dropped on any failure or timeout (a late answer
// must never be taken for the next command's), and opened again by the next command.
import { connect, type Socket } from 'node:net';
import { timeoutError, transportError } from './errors.js';
import { checkCommandFraming, ResponseAssembler, SerialQueue, type TpmTransport } from './transport.js';

export type SocketEndpoint = { readonly kind: 'tcp'; readonly host: string; readonly port: number } | { readonly kind: 'unix'; readonly path: string };

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function describeEndpoint(e: SocketEndpoint): string {
  return e.kind === 'tcp' ? `tcp ${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}` : `unix ${e.path}`;
}

interface Pending {
  readonly assembler: ResponseAssembler;
  readonly resolve: (response: Buffer) => void;
  readonly reject: (e: Error) => void;
}

/** One open socket and the single command in flight on it. */
class Connection {
  readonly socket: Socket;
  #pending: Pending | undefined;
  #failure: Error | undefined;
  readonly #ready: Promise<void>;
  #readyReject: (e: Error) => void = () => undefined;

  constructor(endpoint: SocketEndpoint, description: string) {
    this.socket = endpoint.kind === 'tcp' ? connect({ host: endpoint.host, port: endpoint.port, noDelay: true }) : connect({ path: endpoint.path });
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#readyReject = reject;
      this.socket.once('connect', () => resolve());
    });
    this.#ready.catch(() => undefined);
    this.socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.socket.on('error', (e) => this.fail(transportError(`${description}: ${e.message}`, e)));
    this.socket.on('close', () => this.fail(transportError(`${description} closed the connection`)));
  }

  get dead(): boolean {
    return this.#failure !== undefined;
  }

  /** Resolves once connected; rejects with the reason the connection died. */
  ready(): Promise<void> {
    return this.#failure === undefined ? this.#ready : Promise.reject(this.#failure);
  }

  #onData(chunk: Buffer): void {
    const p = this.#pending;
    if (p === undefined) {
      this.fail(transportError(`${chunk.length} unsolicited bytes from the TPM`));
      return;
    }
    try {
      const response = p.assembler.push(chunk);
      if (response === undefined) return;
      this.#pending = undefined;
      p.resolve(response);
    } catch (e) {
      this.fail(e instanceof Error ? e : transportError(String(e)));
    }
  }

  /** Sends one command; the answer arrives through #onData. */
  exchange(command: Uint8Array): Promise<Buffer> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending = { assembler: new ResponseAssembler(), resolve, reject };
      this.socket.write(command);
    });
  }

  /** Marks the connection dead (first reason wins), destroys the socket, fails the command in flight. */
  fail(reason: Error): void {
    if (this.#failure === undefined) this.#failure = reason;
    this.#readyReject(this.#failure);
    this.socket.destroy();
    const p = this.#pending;
    this.#pending = undefined;
    p?.reject(reason);
  }
}

export class SocketTransport implements TpmTransport {
  readonly description: string;
  readonly endpoint: SocketEndpoint;
  readonly #queue = new SerialQueue();
  #connection: Connection | undefined;
  #closed = false;

  constructor(endpoint: SocketEndpoint, description?: string) {
    if (endpoint.kind === 'tcp' && !LOOPBACK.has(endpoint.host)) {
      throw new TypeError(`a TPM socket must be on loopback (127.0.0.1 or ::1), not ${endpoint.host}`);
    }
    if (endpoint.kind === 'tcp' && (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535)) {
      throw new TypeError(`bad TCP port ${endpoint.port}`);
    }
    this.endpoint = endpoint;
    this.description = description ?? `TPM ${describeEndpoint(endpoint)}`;
  }

  transmit(command: Uint8Array, timeoutMs: number): Promise<Buffer> {
    checkCommandFraming(command);
    return this.#queue.run(() => this.#exchange(command, timeoutMs));
  }

  async #exchange(command: Uint8Array, timeoutMs: number): Promise<Buffer> {
    if (this.#closed) throw transportError(`${this.description} is closed`);
    if (this.#connection === undefined || this.#connection.dead) this.#connection = new Connection(this.endpoint, this.description);
    const conn = this.#connection;
    const timer = setTimeout(() => conn.fail(timeoutError(this.description, timeoutMs)), timeoutMs);
    try {
      await conn.ready();
      return await conn.exchange(command);
    } finally {
      clearTimeout(timer);
      if (conn.dead && this.#connection === conn) this.#connection = undefined;
    }
  }

  /** Drops the connection after the commands already queued; the next command reconnects. Lets another client (tpm2-tools) in. */
  disconnect(): Promise<void> {
    return this.#queue.run(() => this.#drop());
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#queue.run(() => this.#drop()).catch(() => undefined);
  }

  async #drop(): Promise<void> {
    const conn = this.#connection;
    this.#connection = undefined;
    if (conn === undefined || conn.dead) return;
    await new Promise<void>((resolve) => {
      conn.socket.once('close', () => resolve());
      conn.socket.end();
      // A peer that never closes its side must not keep us waiting.
      setTimeout(() => {
        conn.socket.destroy();
        resolve();
      }, 1000).unref();
    });
  }
}
