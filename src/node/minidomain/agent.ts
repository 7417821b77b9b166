// The attestation agent (DESIGN.md §3.3): the mini-domain's program. It opens the auth
// device, finds its trust anchor in device NV — or registers the node on first boot —
// then attests every VM the hypervisor reports, one job per VM, resuming the jobs an
// earlier (crashed) mini-domain left. It kicks the hypervisor's watchdog while no step
// is stuck, so a hung agent is destroyed and relaunched through the gate (G6).
//
// Settings come from dom0 and are untrusted: a wrong CA URL or token only stops this
// node's VMs from being attested (denial of service). The CA certificate in the settings
// is used for the very first registration only; afterwards only the one in NV (G4).
import { parseCertificate, type Certificate } from '../../crypto/x509.js';
import { TrustlaunchError, isTrustlaunchError } from '../../protocol/errors.js';
import type { AttestationKey, AuthDevice } from '../../tpm/auth-device.js';
import type { MiniDomainCapability, VmReport } from '../hypervisor/index.js';
import { attestVm } from './attest-vm.js';
import { DEFAULT_BACKOFF, backoffDelay, sleep, type BackoffPolicy } from './backoff.js';
import { CaClient } from './ca-client.js';
import { openMiniDomainDevice } from './device.js';
import { readCaCertificate, readRegistration } from './nv-records.js';
import { registerNode } from './registration.js';

export interface AgentLogEvent {
  readonly event: string;
  readonly [key: string]: unknown;
}

/** What dom0 tells the mini-domain (untrusted; see the header). */
export interface AgentSettings {
  readonly caUrl: string;
  /** PEM; trusted for the first registration only, ignored once the device holds a CA certificate. */
  readonly bootstrapCaCertificate?: string;
  /** The one-time enrollment token for the first registration (a secret). */
  readonly enrollToken?: string;
  /** 'off' is a benchmark/development switch: VMs are marked unattested, nothing is sent. */
  readonly attestation?: 'on' | 'off';
  readonly backoff?: BackoffPolicy;
  /** How often the watchdog is kicked (default 2 s). */
  readonly watchdogKickMs?: number;
  /** A step (device call, CA request) running longer than this stops the kicks (default 60 s). */
  readonly stepTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly clock?: () => Date;
  readonly log?: (event: AgentLogEvent) => void;
}

interface Anchored {
  readonly ca: CaClient;
  readonly ak: AttestationKey;
}

export class MiniDomainAgent {
  readonly #cap: MiniDomainCapability;
  readonly #settings: AgentSettings;
  readonly #abort = new AbortController();
  readonly #jobs = new Map<number, Promise<void>>();
  readonly #steps = new Set<{ readonly name: string; readonly since: number }>();
  readonly #kicker: NodeJS.Timeout;
  #unsubscribe: (() => void) | undefined;
  #anchored: Anchored | undefined;
  #crash!: (e: unknown) => void;
  /** Rejects when the agent dies of an unexpected error (the hypervisor then destroys the domain). */
  readonly exited: Promise<never>;

  private constructor(cap: MiniDomainCapability, settings: AgentSettings) {
    this.#cap = cap;
    this.#settings = settings;
    this.exited = new Promise<never>((_resolve, reject) => (this.#crash = reject));
    // Unhandled here on purpose is impossible: the hypervisor watches `exited`.
    this.exited.catch(() => undefined);
    this.#kicker = setInterval(() => this.#kick(), settings.watchdogKickMs ?? 2_000);
    this.#kicker.unref();
    this.#kick();
  }

  /** Starts the agent in the mini-domain that holds `cap`. */
  static start(cap: MiniDomainCapability, settings: AgentSettings): MiniDomainAgent {
    const agent = new MiniDomainAgent(cap, settings);
    agent.#run().catch((e: unknown) => agent.#fail(e));
    return agent;
  }

  /** Stops: no more steps, pending requests aborted, jobs left for the next mini-domain to resume. */
  async stop(): Promise<void> {
    this.#abort.abort();
    clearInterval(this.#kicker);
    this.#unsubscribe?.();
    await Promise.allSettled([...this.#jobs.values()]);
    await this.#anchored?.ca.close();
  }

  async #run(): Promise<void> {
    if (this.#settings.attestation === 'off') {
      // The benchmark/development switch: no device, no CA; every VM is marked unattested.
      this.#log('attestation-off', {});
      const mark = (r: VmReport): void => {
        try {
          if (r.attestation.state !== 'booting') return;
          this.#cap.setAttestation(r.vmId, { state: 'unattested' });
          this.#log('unattested', { vm: r.name });
        } catch {
          // the VM (or this domain) is gone
        }
      };
      this.#unsubscribe = this.#cap.onVmReport(mark);
      for (const r of this.#cap.vmReports()) mark(r);
      return;
    }
    const device = await this.#step('openDevice', () => openMiniDomainDevice(this.#cap));
    const anchored = await this.#anchor(device);
    if (anchored === undefined) return;
    this.#anchored = anchored;
    this.#unsubscribe = this.#cap.onVmReport((r) => this.#schedule(device, anchored, r));
    for (const r of this.#cap.vmReports()) this.#schedule(device, anchored, r);
  }

  /** The CA client pinned to the device's CA certificate, registering first if the device holds none. */
  async #anchor(device: AuthDevice): Promise<Anchored | undefined> {
    const { caUrl } = this.#settings;
    const record = await this.#step('readRegistration', () => readRegistration(device));
    const nvCert = await this.#step('readCaCertificate', () => readCaCertificate(device));
    if (record !== undefined && nvCert !== undefined && record.caCertificate === nvCert.sha256Fingerprint && record.nodeId === this.#cap.nodeId) {
      const ak = await this.#step('attestationKey', () => device.ensureAttestationKey(record.ek));
      this.#log('anchored', { ca: nvCert.sha256Fingerprint });
      return { ca: this.#client(nvCert), ak };
    }
    const bootstrap = this.#bootstrap();
    const token = this.#settings.enrollToken;
    if (bootstrap === undefined || token === undefined) {
      this.#log('unregistered', { message: 'the device holds no CA certificate and no bootstrap certificate or enrollment token was given' });
      return undefined;
    }
    for (let attempt = 0; !this.#abort.signal.aborted; attempt++) {
      try {
        const registered = await registerNode({
          nodeId: this.#cap.nodeId,
          device,
          token,
          caUrl,
          bootstrap,
          eventLog: () => this.#cap.eventLog(),
          signal: this.#abort.signal,
          step: (name, fn) => this.#step(name, fn),
        });
        this.#log('registered', { ca: registered.caCertificate.sha256Fingerprint });
        return { ca: this.#client(registered.caCertificate), ak: registered.ak };
      } catch (e) {
        if (this.#abort.signal.aborted) return undefined;
        if (!isTrustlaunchError(e) || (e.kind !== 'transport' && e.code !== 'INTERNAL')) {
          this.#log('registration-refused', { code: isTrustlaunchError(e) ? e.code : 'ERROR', message: (e as Error).message });
          if (!isTrustlaunchError(e)) throw e;
          return undefined;
        }
        this.#log('ca-unreachable', { code: e.code, message: e.message });
        await sleep(backoffDelay(this.#backoff, attempt), this.#abort.signal);
      }
    }
    return undefined;
  }

  #bootstrap(): Certificate | undefined {
    const pem = this.#settings.bootstrapCaCertificate;
    if (pem === undefined) return undefined;
    try {
      return parseCertificate(pem);
    } catch (e) {
      this.#log('bootstrap-invalid', { message: (e as Error).message });
      return undefined;
    }
  }

  #client(trust: Certificate): CaClient {
    return new CaClient({ url: this.#settings.caUrl, trust, ...(this.#settings.requestTimeoutMs === undefined ? {} : { timeoutMs: this.#settings.requestTimeoutMs }) });
  }

  get #backoff(): BackoffPolicy {
    return this.#settings.backoff ?? DEFAULT_BACKOFF;
  }

  #schedule(device: AuthDevice, anchored: Anchored, report: VmReport): void {
    if (this.#abort.signal.aborted || this.#jobs.has(report.vmId)) return;
    const state = report.attestation.state;
    if (state !== 'booting' && state !== 'attesting') return;
    const job = this.#attest(device, anchored, report)
      .catch((e: unknown) => this.#jobFailed(report, e))
      .finally(() => this.#jobs.delete(report.vmId));
    this.#jobs.set(report.vmId, job);
  }

  async #attest(device: AuthDevice, anchored: Anchored, report: VmReport): Promise<void> {
    await attestVm(
      {
        cap: this.#cap,
        device,
        ak: anchored.ak,
        ca: anchored.ca,
        backoff: this.#backoff,
        clock: this.#settings.clock ?? (() => new Date()),
        signal: this.#abort.signal,
        step: (name, fn) => this.#step(name, fn),
        log: (event, detail) => this.#log(event, detail),
      },
      report,
    );
  }

  /** A job's failure: the VM went away, or the agent is stopping — or a bug, which crashes the agent. */
  #jobFailed(report: VmReport, e: unknown): void {
    if (this.#abort.signal.aborted) return;
    if (isTrustlaunchError(e, 'NOT_FOUND') || isTrustlaunchError(e, 'DOMAIN_STATE_INVALID')) return;
    if (isTrustlaunchError(e)) {
      this.#log('attestation-failed', { vm: report.name, code: e.code, message: e.message });
      return;
    }
    this.#fail(e);
  }

  async #step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (this.#abort.signal.aborted) throw new TrustlaunchError('DOMAIN_STATE_INVALID', 'the agent is stopping');
    const entry = { name, since: Date.now() };
    this.#steps.add(entry);
    try {
      return await fn();
    } finally {
      this.#steps.delete(entry);
    }
  }

  /** Kicks the watchdog unless a step has been running longer than the step timeout (a hang). */
  #kick(): void {
    const limit = this.#settings.stepTimeoutMs ?? 60_000;
    const now = Date.now();
    for (const s of this.#steps) if (now - s.since > limit) return;
    try {
      this.#cap.kickWatchdog();
    } catch {
      clearInterval(this.#kicker);
    }
  }

  #fail(e: unknown): void {
    if (this.#abort.signal.aborted) return;
    this.#log('crashed', { message: e instanceof Error ? e.message : String(e) });
    this.#abort.abort();
    clearInterval(this.#kicker);
    this.#crash(e);
  }

  #log(event: string, detail: Record<string, unknown> = {}): void {
    this.#settings.log?.({ event, ...detail });
  }
}
