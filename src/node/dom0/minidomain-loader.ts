// dom0's part of the mini-domain's life (claim 10): read the image from the node's disk
// with its own file access and hand it to the hypervisor's launch gate — at boot, and
// again whenever the hypervisor reports that the mini-domain ended on its own (crashed or
// hung: G6). dom0 is untrusted; what it reads is checked by the gate, not here. Restarts
// back off (1 s doubling to 60 s) so a mini-domain that keeps dying cannot spin the node.
import { readFile, stat } from 'node:fs/promises';
import type { Dom0Capability, MiniDomainExit, MiniDomainLaunch } from '../hypervisor/index.js';
import { ownBuffer } from './images.js';

export interface LoaderLog {
  (event: { event: string; [key: string]: unknown }): void;
}

const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

export class MiniDomainLoader {
  readonly #dom0: Dom0Capability;
  readonly #imagePath: string;
  readonly #log: LoaderLog;
  #restarts = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #lastLaunchAt = 0;

  constructor(dom0: Dom0Capability, imagePath: string, log: LoaderLog = () => undefined) {
    this.#dom0 = dom0;
    this.#imagePath = imagePath;
    this.#log = log;
  }

  /** Reads the image from disk and hands its pages to the gate (transferred: dom0 keeps nothing). */
  async launch(): Promise<MiniDomainLaunch> {
    if ((await stat(this.#imagePath)).size > MAX_IMAGE_BYTES) throw new RangeError(`${this.#imagePath} is larger than ${MAX_IMAGE_BYTES} bytes`);
    const bytes = await readFile(this.#imagePath);
    const launch = await this.#dom0.launchMiniDomain(ownBuffer(bytes));
    this.#lastLaunchAt = Date.now();
    this.#log({ event: 'minidomain-launched', domain: launch.domainId, launch: launch.launch, digest: launch.digest });
    return launch;
  }

  /** The first launch at boot; a refusal (e.g. a tampered image) is logged and retried with backoff. */
  async start(): Promise<void> {
    try {
      await this.launch();
    } catch (e) {
      this.#log({ event: 'minidomain-launch-failed', message: e instanceof Error ? e.message : String(e) });
      this.#schedule();
    }
  }

  /** The hypervisor's exit hook: relaunch unless dom0 stopped it on purpose or the node is closing. */
  onExit(exit: MiniDomainExit): void {
    this.#log({ event: 'minidomain-exited', kind: exit.kind, domain: exit.domainId, reason: exit.reason });
    if (exit.kind !== 'stopped') this.#schedule();
  }

  #schedule(): void {
    if (this.#closed) return;
    // A mini-domain that ran for a minute earns a fresh start of the backoff.
    if (Date.now() - this.#lastLaunchAt > 60_000) this.#restarts = 0;
    const delay = Math.min(60_000, 1000 * 2 ** Math.min(this.#restarts, 6));
    this.#restarts++;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#relaunch(), this.#restarts === 1 ? 0 : delay);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  async #relaunch(): Promise<void> {
    if (this.#closed || this.#dom0.miniDomain().state !== 'absent') return;
    try {
      await this.launch();
    } catch (e) {
      this.#log({ event: 'minidomain-launch-failed', message: e instanceof Error ? e.message : String(e) });
      // The gate refused or the disk failed: try again later, still backing off.
      this.#schedule();
    }
  }
}
