// The `swtpm` auth device (`--device swtpm`): the node's own swtpm over its own state
// directory inside the node directory, manufactured on first power-on with EK certificates
// from a node-local CA (manufacture.ts). powerOn starts swtpm and runs TPM2_Startup(CLEAR)
// (PCRs reset; persistent keys and NV survive); powerOff runs TPM2_Shutdown(CLEAR) and
// stops swtpm, which saves its state. A node that exits without powerOff still stops its
// swtpm (process.ts: exit hook and parent-death signal).
import { execFileSync } from 'node:child_process';
import { TpmClient } from '../client/client.js';
import { shutdown, startupClear } from '../client/commands/startup.js';
import { SocketTransport, describeEndpoint } from '../client/socket-transport.js';
import { isManufactured, manufactureSwtpm, swtpmLayout, type ManufactureOptions, type SwtpmLayout } from './manufacture.js';
import { SwtpmProcess, type SwtpmTransportKind } from './process.js';
import { TpmAuthDevice, type TpmAuthDeviceOptions } from './tpm-auth-device.js';

export interface SwtpmAuthDeviceOptions extends TpmAuthDeviceOptions {
  /** The node's directory: swtpm state, its configuration and the local CA live under it. */
  readonly nodeDir: string;
  /**
   * How the client reaches swtpm. Default 'unix': a 0600 socket in the node directory that
   * only the node's user can open; 'tcp' listens on 127.0.0.1, where any local process can
   * connect (useful for tools on another account; tpm2-tools work with both).
   */
  readonly transport?: SwtpmTransportKind;
  /** Per-command timeout (default 30 s). */
  readonly timeoutMs?: number;
  readonly manufacture?: ManufactureOptions;
}

let swtpmVersion: string | undefined;

/** "0.7.1" from `swtpm --version`, read once. */
function version(): string {
  if (swtpmVersion === undefined) {
    try {
      const out = execFileSync('swtpm', ['--version'], { encoding: 'utf8', timeout: 5000 });
      swtpmVersion = /version (\S+?),?\s/.exec(out)?.[1] ?? 'unknown';
    } catch {
      swtpmVersion = 'unknown';
    }
  }
  return swtpmVersion;
}

export class SwtpmAuthDevice extends TpmAuthDevice {
  readonly kind = 'swtpm' as const;
  readonly layout: SwtpmLayout;
  readonly #options: SwtpmAuthDeviceOptions;
  #process: SwtpmProcess | undefined;

  constructor(options: SwtpmAuthDeviceOptions) {
    super(options);
    this.#options = options;
    this.layout = swtpmLayout(options.nodeDir);
  }

  get description(): string {
    const p = this.#process;
    return p === undefined ? `swtpm ${version()} (stopped) in ${this.layout.stateDir}` : `swtpm ${version()} at ${describeEndpoint(p.data)}`;
  }

  /** The running swtpm (tests reach it with tpm2-tools through `process.tcti`). */
  get process(): SwtpmProcess | undefined {
    return this.#process;
  }

  protected async connect(): Promise<TpmClient> {
    if (!(await isManufactured(this.layout))) await manufactureSwtpm(this.layout, this.#options.manufacture);
    const proc = await SwtpmProcess.start({ stateDir: this.layout.stateDir, transport: this.#options.transport ?? 'unix' });
    const client = new TpmClient(new SocketTransport(proc.data, `swtpm ${describeEndpoint(proc.data)}`), { timeoutMs: this.#options.timeoutMs ?? 30_000 });
    try {
      await startupClear(client);
    } catch (e) {
      await client.close();
      await proc.stop();
      throw e;
    }
    this.#process = proc;
    return client;
  }

  protected async disconnect(client: TpmClient): Promise<void> {
    const proc = this.#process;
    this.#process = undefined;
    try {
      if (proc?.running === true) await shutdown(client, 'clear').catch(() => undefined);
    } finally {
      await client.close();
      await proc?.stop();
    }
  }
}
