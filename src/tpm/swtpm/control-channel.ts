// swtpm's control channel (swtpm's include/swtpm/tpm_ioctl.h, "Commands used by the
// non-CUSE TPMs"): a UINT32 command code and its request, answered by the `resp` part of
// the matching ptm_* structure, all big-endian. It plays the platform's part: power
// (CMD_INIT is a TPM reset, CMD_SHUTDOWN ends the process after saving state), locality,
// cancellation. One short connection per command, so tpm2-tools' swtpm TCTI, which also
// uses this channel, is never locked out.
import { connect, type Socket } from 'node:net';
import { TrustlaunchError } from '../../protocol/errors.js';
import { timeoutError, transportError } from '../client/errors.js';
import { describeEndpoint, type SocketEndpoint } from '../client/socket-transport.js';

/** The ctrl command codes (tpm_ioctl.h, enum CMD_*). */
export const SWTPM_CMD = {
  GET_CAPABILITY: 0x01,
  INIT: 0x02,
  SHUTDOWN: 0x03,
  GET_TPMESTABLISHED: 0x04,
  SET_LOCALITY: 0x05,
  CANCEL_TPM_CMD: 0x09,
  STORE_VOLATILE: 0x0a,
  RESET_TPMESTABLISHED: 0x0b,
  STOP: 0x0e,
} as const;

/** PTM_CAP_* bits of the CMD_GET_CAPABILITY answer. */
export const PTM_CAP = {
  INIT: 1 << 0,
  SHUTDOWN: 1 << 1,
  GET_TPMESTABLISHED: 1 << 2,
  SET_LOCALITY: 1 << 3,
  HASHING: 1 << 4,
  CANCEL_TPM_CMD: 1 << 5,
  STORE_VOLATILE: 1 << 6,
  RESET_TPMESTABLISHED: 1 << 7,
  GET_STATEBLOB: 1 << 8,
  SET_STATEBLOB: 1 << 9,
  STOP: 1 << 10,
} as const;

/** PTM_INIT_FLAG_DELETE_VOLATILE: drop the saved volatile state instead of resuming it. */
export const PTM_INIT_FLAG_DELETE_VOLATILE = 1 << 0;

/** swtpm refused a control command: `result` is its TPM_RESULT. */
export class SwtpmControlError extends TrustlaunchError {
  readonly result: number;
  constructor(command: number, result: number) {
    super('TPM_RESPONSE_ERROR', `swtpm control command ${command} failed with result 0x${result.toString(16)}`, { detail: { command, result } });
    this.name = 'SwtpmControlError';
    this.result = result;
  }
}

export class SwtpmControl {
  readonly endpoint: SocketEndpoint;
  readonly timeoutMs: number;

  constructor(endpoint: SocketEndpoint, timeoutMs = 10_000) {
    this.endpoint = endpoint;
    this.timeoutMs = timeoutMs;
  }

  /** The PTM_CAP_* bits this swtpm supports. */
  async getCapability(): Promise<number> {
    const answer = await this.#exchange(SWTPM_CMD.GET_CAPABILITY, Buffer.alloc(0), 8);
    return Number(answer.readBigUInt64BE(0) & 0xffff_ffffn);
  }

  /** CMD_INIT: (re)initializes the TPM as at power-on; a TPM2_Startup must follow. */
  async init(flags = 0): Promise<void> {
    const req = Buffer.alloc(4);
    req.writeUInt32BE(flags);
    await this.#resultOnly(SWTPM_CMD.INIT, req);
  }

  /** CMD_SHUTDOWN: swtpm saves its state and exits. */
  shutdown(): Promise<void> {
    return this.#resultOnly(SWTPM_CMD.SHUTDOWN, Buffer.alloc(0));
  }

  /** CMD_STOP: halts the TPM (process stays up; CMD_INIT starts it again). */
  stop(): Promise<void> {
    return this.#resultOnly(SWTPM_CMD.STOP, Buffer.alloc(0));
  }

  /** CMD_SET_LOCALITY: the locality of the following TPM commands (0–4). */
  async setLocality(locality: number): Promise<void> {
    if (!Number.isInteger(locality) || locality < 0 || locality > 4) throw new RangeError('locality 0..4');
    await this.#resultOnly(SWTPM_CMD.SET_LOCALITY, Buffer.from([locality]));
  }

  /** CMD_CANCEL_TPM_CMD: asks the TPM to cancel the command it is running. */
  cancel(): Promise<void> {
    return this.#resultOnly(SWTPM_CMD.CANCEL_TPM_CMD, Buffer.alloc(0));
  }

  /** CMD_GET_TPMESTABLISHED: the TPM Established flag. */
  async getTpmEstablished(): Promise<boolean> {
    // ptm_est.resp is { ptm_res tpm_result; unsigned char bit; } padded to 8 bytes.
    const answer = await this.#exchange(SWTPM_CMD.GET_TPMESTABLISHED, Buffer.alloc(0), 8);
    const result = answer.readUInt32BE(0);
    if (result !== 0) throw new SwtpmControlError(SWTPM_CMD.GET_TPMESTABLISHED, result);
    return (answer[4] ?? 0) !== 0;
  }

  async #resultOnly(command: number, body: Buffer): Promise<void> {
    const answer = await this.#exchange(command, body, 4);
    const result = answer.readUInt32BE(0);
    if (result !== 0) throw new SwtpmControlError(command, result);
  }

  /** One connection: send the command, read exactly `answerSize` bytes, close. */
  #exchange(command: number, body: Buffer, answerSize: number): Promise<Buffer> {
    const what = `swtpm control ${describeEndpoint(this.endpoint)}`;
    return new Promise<Buffer>((resolve, reject) => {
      const socket: Socket = this.endpoint.kind === 'tcp' ? connect({ host: this.endpoint.host, port: this.endpoint.port }) : connect({ path: this.endpoint.path });
      const chunks: Buffer[] = [];
      let received = 0;
      const finish = (error: Error | undefined, answer?: Buffer): void => {
        clearTimeout(timer);
        socket.destroy();
        if (error !== undefined) reject(error);
        else resolve(answer ?? Buffer.alloc(0));
      };
      const timer = setTimeout(() => finish(timeoutError(what, this.timeoutMs)), this.timeoutMs);
      socket.on('connect', () => {
        const msg = Buffer.alloc(4 + body.length);
        msg.writeUInt32BE(command);
        body.copy(msg, 4);
        socket.write(msg);
      });
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received > answerSize) finish(transportError(`${what}: ${received} bytes where ${answerSize} were due`));
        else if (received === answerSize) finish(undefined, Buffer.concat(chunks, received));
      });
      socket.on('error', (e) => finish(transportError(`${what}: ${e.message}`, e)));
      socket.on('close', () => finish(transportError(`${what}: closed after ${received} of ${answerSize} bytes`)));
    });
  }
}
