// The `sim` auth device (DESIGN.md §3.4): the AuthDevice interface over the software TPM
// engine. powerOn loads the engine from its store and runs TPM2_Startup(CLEAR), so a power
// cycle resets the PCRs while persistent objects and NV survive, as on a real TPM.
import type { AttestationKey, AuthDevice, AuthDeviceKind, EkAlgorithm, Endorsement, NvIndexAttributes, QuoteResult } from '../auth-device.js';
import { EK_CERT_NV_INDEX } from '../auth-device.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { PcrBankLike } from '../pcr-bank.js';
import { AK_HANDLE, AK_TEMPLATES, EK_HANDLE, type AkAlgorithm } from '../templates.js';
import { TpmEngine, type LoadedObject } from './engine.js';
import { FileStateStore, type StateStore } from './store.js';

export interface SoftwareTpmOptions {
  readonly store: StateStore;
  /** Algorithm of AKs this device creates (an existing persistent AK is kept as it is). Default ECC P-256. */
  readonly akAlgorithm?: AkAlgorithm;
  /** PCRs provided from outside the engine (a storage-only device); default: the engine's own. */
  readonly pcrs?: PcrBankLike;
  readonly description?: string;
  readonly kind?: AuthDeviceKind;
}

/** Runs `fn` so that a synchronous throw becomes a rejected promise, as callers of an async API expect. */
function settle<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}

const EK_ALGORITHMS: readonly EkAlgorithm[] = ['rsa2048', 'ecc-p256', 'ecc-p384'];

export class SoftwareTpmDevice implements AuthDevice {
  readonly kind: AuthDeviceKind;
  readonly description: string;
  readonly #options: SoftwareTpmOptions;
  #engine: TpmEngine | undefined;

  constructor(options: SoftwareTpmOptions) {
    this.#options = options;
    this.kind = options.kind ?? 'sim';
    this.description = options.description ?? 'trustlaunch software TPM 2.0';
  }

  /** The running engine; DEVICE_NOT_READY before powerOn or after powerOff. */
  get engine(): TpmEngine {
    if (this.#engine === undefined) throw new TrustlaunchError('DEVICE_NOT_READY', 'the software TPM is powered off');
    return this.#engine;
  }

  async powerOn(): Promise<void> {
    if (this.#engine !== undefined) await this.#engine.shutdown();
    const engine = await TpmEngine.load(this.#options.store, this.#options.pcrs === undefined ? {} : { pcrs: this.#options.pcrs });
    await engine.startup();
    this.#engine = engine;
  }

  async powerOff(): Promise<void> {
    const engine = this.#engine;
    this.#engine = undefined;
    if (engine !== undefined) await engine.shutdown();
  }

  endorsements(): Promise<readonly Endorsement[]> {
    return settle(() => this.#endorsements());
  }

  #endorsements(): Endorsement[] {
    const engine = this.engine;
    const out: Endorsement[] = [];
    for (const algorithm of EK_ALGORITHMS) {
      if (!engine.hasObject(EK_HANDLE[algorithm])) continue;
      const ek = engine.object(EK_HANDLE[algorithm]);
      out.push({ algorithm, public: ek.publicBytes, certificate: engine.nvRead(EK_CERT_NV_INDEX[algorithm]) });
    }
    return out;
  }

  #ek(ek: EkAlgorithm): LoadedObject {
    const engine = this.engine;
    if (!engine.hasObject(EK_HANDLE[ek])) throw new TrustlaunchError('TPM_OBJECT_INVALID', `this TPM has no ${ek} endorsement key`);
    return engine.object(EK_HANDLE[ek]);
  }

  /** The AK object at `ak.handle`, which must be the key the caller holds. */
  #ak(ak: AttestationKey): LoadedObject {
    const o = this.engine.object(ak.handle);
    if (!o.publicBytes.equals(ak.public)) throw new TrustlaunchError('TPM_OBJECT_INVALID', `the object at 0x${ak.handle.toString(16)} is not this attestation key`);
    return o;
  }

  ensureAttestationKey(ek: EkAlgorithm): Promise<AttestationKey> {
    return settle(() => this.#ensureAttestationKey(ek));
  }

  async #ensureAttestationKey(ek: EkAlgorithm): Promise<AttestationKey> {
    const engine = this.engine;
    const handle = AK_HANDLE[ek];
    const o = engine.hasObject(handle)
      ? engine.object(handle)
      : await engine.createPersistent(this.#ek(ek).handle, AK_TEMPLATES[this.#options.akAlgorithm ?? 'ecc-p256'], handle);
    return { handle, public: o.publicBytes, name: o.name };
  }

  activateCredential(ak: AttestationKey, ek: EkAlgorithm, credentialBlob: Uint8Array, encryptedSecret: Uint8Array): Promise<Uint8Array> {
    return settle(() => this.engine.activateCredential(this.#ak(ak).handle, this.#ek(ek).handle, credentialBlob, encryptedSecret));
  }

  quote(ak: AttestationKey, pcrs: readonly number[], qualifyingData: Uint8Array): Promise<QuoteResult> {
    return settle(() => this.engine.quote(this.#ak(ak).handle, pcrs, qualifyingData));
  }

  pcrExtend(pcr: number, digest: Uint8Array): Promise<void> {
    return settle(() => this.engine.pcrExtend(pcr, digest));
  }

  pcrRead(pcrs: readonly number[]): Promise<ReadonlyMap<number, Uint8Array>> {
    return settle(() => new Map(pcrs.map((i) => [i, this.engine.pcrRead(i)])));
  }

  nvDefine(index: number, attributes: NvIndexAttributes): Promise<void> {
    return settle(() => this.engine.nvDefine(index, { size: attributes.size, writeStClear: attributes.writeLockable ?? false }));
  }

  nvWrite(index: number, data: Uint8Array, offset?: number): Promise<void> {
    return settle(() => this.engine.nvWrite(index, data, offset ?? 0));
  }

  nvRead(index: number): Promise<Uint8Array> {
    return settle(() => this.engine.nvRead(index));
  }

  nvSize(index: number): Promise<number | undefined> {
    return settle(() => this.engine.nvSize(index));
  }

  nvWriteLock(index: number): Promise<void> {
    return settle(() => this.engine.nvWriteLock(index));
  }

  nvUndefine(index: number): Promise<void> {
    return settle(() => this.engine.nvUndefine(index));
  }
}

/** The `sim` device over the state file a manufacturing step wrote (manufacturer-ca.ts). */
export function openSoftwareTpm(statePath: string, options: Omit<SoftwareTpmOptions, 'store'> = {}): SoftwareTpmDevice {
  return new SoftwareTpmDevice({ ...options, store: new FileStateStore(statePath), description: options.description ?? `trustlaunch software TPM 2.0 (${statePath})` });
}
