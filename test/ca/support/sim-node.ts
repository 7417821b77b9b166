// A node as the CA sees it, built from real parts: a manufactured software TPM (EK
// certificate from its manufacturer CA), the hypervisor's own measured boot (PCRs 0, 4, 5)
// and launch-gate measurement (PCR 12), real quotes and credential activation. Tests and
// the benchmark use it to produce registrations and evidence — no hand-made TPM output.
import { createHash } from 'node:crypto';
import { canonicalBytes } from '../../../src/protocol/canonical-json.js';
import { fromBase64url, toBase64url } from '../../../src/protocol/base64url.js';
import { sha256Digest, type Digest } from '../../../src/protocol/digest.js';
import { newNonce } from '../../../src/protocol/nonce.js';
import { PLATFORM_PCRS } from '../../../src/protocol/pcrs.js';
import type { CredentialAnswer, CredentialChallenge, Evidence, LaunchClaims, RegistrationRequest, TpmQuote } from '../../../src/protocol/messages.js';
import { formatSshPublicKey, generateKeyPair } from '../../../src/crypto/index.js';
import type { Certificate } from '../../../src/crypto/x509.js';
import type { AttestationKey, AuthDevice, EkAlgorithm, Endorsement } from '../../../src/tpm/auth-device.js';
import { openSoftwareTpm, type SoftwareTpmDevice } from '../../../src/tpm/sim/device.js';
import { manufactureSoftwareTpm } from '../../../src/tpm/sim/manufacturer-ca.js';
import type { TcgEvent } from '../../../src/tpm/eventlog/event.js';
import { eventsToJson } from '../../../src/tpm/eventlog/json.js';
import type { AkAlgorithm } from '../../../src/tpm/templates.js';
import { DeviceSlot } from '../../../src/node/hypervisor/device-slot.js';
import { MeasuredBoot } from '../../../src/node/hypervisor/measured-boot.js';
import { tempDir } from '../../support/system.js';

/** What the node's boot measured: the digests an operator puts into platform reference values. */
export interface NodeMeasurements {
  readonly firmware: Digest;
  readonly hypervisor: Digest;
  readonly bootConfig: Uint8Array;
  readonly minidomain: Digest;
}

export function defaultMeasurements(label = 'trusted'): NodeMeasurements {
  const minidomain = sha256Digest(`mini-domain image ${label}`);
  return {
    firmware: sha256Digest(`firmware ${label}`),
    hypervisor: sha256Digest(`hypervisor ${label}`),
    bootConfig: canonicalBytes({ launchPolicy: { minidomain }, node: label }),
    minidomain,
  };
}

export interface SimNodeOptions {
  readonly nodeId?: string;
  readonly ek?: EkAlgorithm;
  readonly ak?: AkAlgorithm;
  readonly measurements?: NodeMeasurements;
  /** Manufacture in this directory (reusing its manufacturer CA); default a fresh temp dir. */
  readonly dir?: string;
}

/**
 * A node over an auth device: the software TPM by default (`SimNode.create`), or any other
 * device such as a real swtpm (`SimNode.boot`).
 */
export class SimNode<D extends AuthDevice = SoftwareTpmDevice> {
  readonly nodeId: string;
  readonly device: D;
  readonly ekAlgorithm: EkAlgorithm;
  readonly endorsement: Endorsement;
  readonly ak: AttestationKey;
  readonly manufacturerCa: Certificate;
  readonly measurements: NodeMeasurements;
  /** The software TPM's state file ('' for other devices). */
  readonly statePath: string;
  #events: TcgEvent[];
  readonly #dispose: () => void;

  private constructor(init: {
    nodeId: string;
    device: D;
    ekAlgorithm: EkAlgorithm;
    endorsement: Endorsement;
    ak: AttestationKey;
    manufacturerCa: Certificate;
    measurements: NodeMeasurements;
    statePath: string;
    events: TcgEvent[];
    dispose: () => void;
  }) {
    this.nodeId = init.nodeId;
    this.device = init.device;
    this.ekAlgorithm = init.ekAlgorithm;
    this.endorsement = init.endorsement;
    this.ak = init.ak;
    this.manufacturerCa = init.manufacturerCa;
    this.measurements = init.measurements;
    this.statePath = init.statePath;
    this.#events = init.events;
    this.#dispose = init.dispose;
  }

  static async create(opts: SimNodeOptions = {}): Promise<SimNode> {
    const tmp = opts.dir === undefined ? tempDir('tl-ca-node-') : undefined;
    const dir = opts.dir ?? (tmp as { path: string }).path;
    const ekAlgorithm = opts.ek ?? 'ecc-p256';
    const statePath = `${dir}/tpm-${opts.nodeId ?? 'node'}-${Math.random().toString(36).slice(2)}.json`;
    const made = await manufactureSoftwareTpm(dir, { algorithms: [ekAlgorithm], statePath });
    const device = openSoftwareTpm(made.statePath, opts.ak === undefined ? {} : { akAlgorithm: opts.ak });
    await device.powerOn();
    return SimNode.boot(device, { nodeId: opts.nodeId ?? 'node-1', ek: ekAlgorithm, manufacturerCa: made.caCertificate, statePath: made.statePath, ...(opts.measurements === undefined ? {} : { measurements: opts.measurements }), dispose: () => tmp?.dispose() });
  }

  /** Measured boot on a powered-on device (PCRs 0, 4, 5 by the hypervisor, PCR 12 by the launch gate). */
  static async boot<T extends AuthDevice>(
    device: T,
    opts: { nodeId: string; ek: EkAlgorithm; manufacturerCa: Certificate; measurements?: NodeMeasurements; statePath?: string; dispose?: () => void },
  ): Promise<SimNode<T>> {
    const endorsement = (await device.endorsements()).find((e) => e.algorithm === opts.ek);
    if (endorsement === undefined) throw new Error(`the device has no ${opts.ek} EK`);
    const ak = await device.ensureAttestationKey(opts.ek);
    const measurements = opts.measurements ?? defaultMeasurements();
    const boot = new MeasuredBoot(new DeviceSlot(device));
    await boot.measureBoot({ description: 'platform firmware', digest: measurements.firmware }, { description: 'trustlaunch hypervisor', digest: measurements.hypervisor }, measurements.bootConfig);
    await boot.measureMiniDomain(measurements.minidomain, 1);
    return new SimNode<T>({
      nodeId: opts.nodeId,
      device,
      ekAlgorithm: opts.ek,
      endorsement,
      ak,
      manufacturerCa: opts.manufacturerCa,
      measurements,
      statePath: opts.statePath ?? '',
      events: boot.events(),
      dispose: opts.dispose ?? (() => undefined),
    });
  }

  /** The measured boot's event log (JSON form). */
  get eventLog(): Evidence['eventLog'] {
    return eventsToJson(this.#events);
  }

  get events(): readonly TcgEvent[] {
    return this.#events;
  }

  /** The platform reference values that describe this node. */
  platformReference(name = 'trusted-platform'): { name: string; hypervisor: Digest; minidomain: Digest; firmware: Digest; bootConfig: Digest } {
    return { name, hypervisor: this.measurements.hypervisor, minidomain: this.measurements.minidomain, firmware: this.measurements.firmware, bootConfig: sha256Digest(this.measurements.bootConfig) };
  }

  registrationRequest(token: string, overrides: Partial<{ nodeId: string; ekCertificate: Uint8Array; akPublic: Uint8Array; akName: Uint8Array; ekPublic: Uint8Array }> = {}): RegistrationRequest {
    return {
      token,
      nodeId: overrides.nodeId ?? this.nodeId,
      ek: { public: toBase64url(overrides.ekPublic ?? this.endorsement.public), certificate: toBase64url(overrides.ekCertificate ?? this.endorsement.certificate) },
      ak: { public: toBase64url(overrides.akPublic ?? this.ak.public), name: toBase64url(overrides.akName ?? this.ak.name) },
    };
  }

  /** Activates the credential with the TPM and quotes the platform PCRs with the challenge's qualifying data. */
  async answer(challenge: CredentialChallenge, ak: AttestationKey = this.ak): Promise<CredentialAnswer> {
    const secret = await this.device.activateCredential(ak, this.ekAlgorithm, fromBase64url(challenge.credentialBlob), fromBase64url(challenge.encryptedSecret));
    return { secret: toBase64url(secret), quote: await this.quote(fromBase64url(challenge.qualifyingData), ak), eventLog: this.eventLog };
  }

  async quote(qualifyingData: Uint8Array, ak: AttestationKey = this.ak, pcrs: readonly number[] = PLATFORM_PCRS): Promise<TpmQuote> {
    const q = await this.device.quote(ak, pcrs, qualifyingData);
    const values = await this.device.pcrRead(pcrs);
    return {
      attest: toBase64url(q.attest),
      signature: toBase64url(q.signature),
      pcrs: { sha256: Object.fromEntries([...values].map(([i, v]) => [String(i), Buffer.from(v).toString('hex')])) },
    };
  }

  /** Launch claims for a fresh VM (a new nonce and host key each time unless given). */
  claims(overrides: Partial<LaunchClaims> = {}): LaunchClaims {
    const vmId = overrides.vmId ?? `vm-${Math.random().toString(36).slice(2, 10)}`;
    return {
      nodeId: this.nodeId,
      vmId,
      nonce: newNonce(),
      hostname: `${vmId}.trustlaunch.test`,
      kernel: sha256Digest('kernel image'),
      sshHostKey: formatSshPublicKey(generateKeyPair('ed25519').publicKey),
      time: Math.floor(Date.now() / 1000),
      ...overrides,
    };
  }

  /** Evidence as the mini-domain makes it: a quote whose extraData is SHA-256(canonical claims). */
  async evidence(claims: LaunchClaims = this.claims()): Promise<Evidence> {
    const qualifyingData = createHash('sha256').update(canonicalBytes(claims)).digest();
    return { claims, quote: await this.quote(qualifyingData), eventLog: this.eventLog };
  }

  /** Extends a PCR outside the measured boot (the event log no longer replays). */
  async tamper(pcr: number, digest: Uint8Array = createHash('sha256').update('tamper').digest()): Promise<void> {
    await this.device.pcrExtend(pcr, digest);
  }

  async dispose(): Promise<void> {
    await this.device.powerOff();
    this.#dispose();
  }
}
