// The AuthDevice interface (DESIGN.md §3.4) over a real TPM 2.0 through the command
// client: shared by the `swtpm` and `tpm` (/dev/tpmrm0) backends, which differ only in
// how the TPM is reached and powered. Every operation runs alone (a lock), so one
// operation's transient objects and sessions never meet another's in a TPM with three
// object slots, and each flushes what it created on every path (client/scoped.ts).
//
// TPM answers map to the same error codes the software TPM raises, so callers see one
// behaviour whichever backend runs.
import { TrustlaunchError, type ErrorCode } from '../../protocol/errors.js';
import type { AttestationKey, AuthDevice, AuthDeviceKind, EkAlgorithm, Endorsement, NvIndexAttributes, QuoteResult } from '../auth-device.js';
import { EK_CERT_NV_INDEX, NV_INDEX_MAX } from '../auth-device.js';
import { BOUNDS, TPM_ALG, TPM_HT, TPM_RH } from '../constants.js';
import { hasAttributes } from '../structures/object-attributes.js';
import { pcrSelection } from '../structures/pcr-selection.js';
import type { TpmtPublic } from '../structures/public.js';
import { AK_HANDLE, AK_TEMPLATES, EK_HANDLE, EK_TEMPLATES, type AkAlgorithm } from '../templates.js';
import type { TpmClient } from '../client/client.js';
import { activateCredential as tpmActivateCredential, quote as tpmQuote } from '../client/commands/attestation.js';
import { getProperties } from '../client/commands/capability.js';
import { nvDefineSpace, nvRead, nvReadPublic, nvUndefineSpace, nvWrite, nvWriteLock, type NvReadPublicResult } from '../client/commands/nv.js';
import { create, createPrimary, evictControl, load, readPublic, type ReadPublicResult } from '../client/commands/objects.js';
import { pcrExtend, pcrReadSha256 } from '../client/commands/pcr.js';
import { TPMA_NV, TPM_PT } from '../client/constants.js';
import { isTpmResponseError } from '../client/errors.js';
import { RC } from '../client/response-code.js';
import { withEndorsementKeyAuth, withTransient } from '../client/scoped.js';
import { SerialQueue } from '../client/transport.js';
import { derCertificate } from './der.js';

const EK_ALGORITHMS: readonly EkAlgorithm[] = ['rsa2048', 'ecc-p256', 'ecc-p384'];

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

/** Re-raises a TpmResponseError whose base code is in `map` as that TrustlaunchError code (cause kept); anything else unchanged. */
function mapTpmError(e: unknown, map: ReadonlyMap<number, ErrorCode>, message: string, detail?: Record<string, unknown>): never {
  if (isTpmResponseError(e)) {
    const code = map.get(e.rc.base);
    if (code !== undefined) throw new TrustlaunchError(code, `${message}: ${e.rc.name}`, detail === undefined ? { cause: e } : { cause: e, detail });
  }
  throw e;
}

const NV_ERRORS: ReadonlyMap<number, ErrorCode> = new Map([
  [RC.HANDLE, 'NV_INDEX_UNDEFINED'],
  [RC.NV_DEFINED, 'NV_INDEX_EXISTS'],
  [RC.NV_LOCKED, 'NV_LOCKED'],
  [RC.NV_RANGE, 'NV_SIZE_EXCEEDED'],
  [RC.NV_SIZE, 'NV_SIZE_EXCEEDED'],
  [RC.NV_SPACE, 'NV_SIZE_EXCEEDED'],
  [RC.SIZE, 'NV_SIZE_EXCEEDED'],
  [RC.NV_UNINITIALIZED, 'NV_UNINITIALIZED'],
  [RC.NV_AUTHORIZATION, 'NV_ATTRIBUTES'],
  [RC.ATTRIBUTES, 'NV_ATTRIBUTES'],
]);

const CREDENTIAL_ERRORS: ReadonlyMap<number, ErrorCode> = new Map([
  [RC.INTEGRITY, 'CREDENTIAL_INTEGRITY'],
  [RC.VALUE, 'CREDENTIAL_INTEGRITY'],
  [RC.SIZE, 'CREDENTIAL_INTEGRITY'],
  [RC.ECC_POINT, 'CREDENTIAL_INTEGRITY'],
]);

const OBJECT_ERRORS: ReadonlyMap<number, ErrorCode> = new Map([[RC.HANDLE, 'TPM_OBJECT_INVALID']]);

/** Does `pub` have the shape of the `alg` EK template (type, size, restricted decryption)? */
function isEkOf(alg: EkAlgorithm, pub: TpmtPublic): boolean {
  const t = EK_TEMPLATES[alg];
  if (pub.type !== t.type || pub.nameAlg !== t.nameAlg || !hasAttributes(pub.objectAttributes, 'restricted', 'decrypt', 'fixedTPM', 'fixedParent')) return false;
  if (pub.type === TPM_ALG.RSA && t.type === TPM_ALG.RSA) return pub.parameters.keyBits === t.parameters.keyBits;
  if (pub.type === TPM_ALG.ECC && t.type === TPM_ALG.ECC) return pub.parameters.curveID === t.parameters.curveID;
  return false;
}

/** An AK this device may use: a restricted signing key bound to this TPM. */
function isAttestationKey(pub: TpmtPublic): boolean {
  return hasAttributes(pub.objectAttributes, 'restricted', 'sign', 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin') && !hasAttributes(pub.objectAttributes, 'decrypt');
}

export interface TpmAuthDeviceOptions {
  /** Algorithm of AKs this device creates (an existing persistent AK is kept as it is). Default ECC P-256. */
  readonly akAlgorithm?: AkAlgorithm;
}

export abstract class TpmAuthDevice implements AuthDevice {
  abstract readonly kind: AuthDeviceKind;
  abstract readonly description: string;
  readonly #akAlgorithm: AkAlgorithm;
  readonly #ops = new SerialQueue();
  #client: TpmClient | undefined;
  #nvChunk: number = BOUNDS.NV_BUFFER;
  /** AK public areas checked at their handle since power-on (only this device writes persistent objects). */
  readonly #verifiedAks = new Map<number, Buffer>();

  protected constructor(options: TpmAuthDeviceOptions = {}) {
    this.#akAlgorithm = options.akAlgorithm ?? 'ecc-p256';
  }

  /** Reaches (and, when this backend owns it, starts) the TPM and runs TPM2_Startup(CLEAR). */
  protected abstract connect(): Promise<TpmClient>;
  /** Releases the TPM (orderly shutdown where this backend owns its power). */
  protected abstract disconnect(client: TpmClient): Promise<void>;

  /** The running client (tests use it to look inside); DEVICE_NOT_READY when powered off. */
  get client(): TpmClient {
    if (this.#client === undefined) throw new TrustlaunchError('DEVICE_NOT_READY', `${this.kind} device is powered off`);
    return this.#client;
  }

  powerOn(): Promise<void> {
    return this.#ops.run(async () => {
      if (this.#client !== undefined) await this.#release();
      const client = await this.connect();
      this.#verifiedAks.clear();
      try {
        const props = await getProperties(client, TPM_PT.NV_BUFFER_MAX, 1);
        this.#nvChunk = Math.min(props.get(TPM_PT.NV_BUFFER_MAX) ?? BOUNDS.NV_BUFFER, BOUNDS.NV_BUFFER);
      } catch (e) {
        await this.disconnect(client).catch(() => undefined);
        throw e;
      }
      this.#client = client;
    });
  }

  powerOff(): Promise<void> {
    return this.#ops.run(() => this.#release());
  }

  async #release(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#verifiedAks.clear();
    if (client !== undefined) await this.disconnect(client);
  }

  /** Runs `fn` alone with the powered-on client. */
  #op<T>(fn: (tpm: TpmClient) => Promise<T>): Promise<T> {
    return this.#ops.run(() => fn(this.client));
  }

  // --- endorsement keys -------------------------------------------------------------

  /** The `alg` EK: persistent at its conventional handle, else re-created from its template (the same key: primaries are deterministic). */
  async #withEk<T>(tpm: TpmClient, alg: EkAlgorithm, fn: (handle: number, pub: TpmtPublic, publicBytes: Buffer) => Promise<T>): Promise<T> {
    const persistent = await readPublic(tpm, EK_HANDLE[alg]).catch((e: unknown) => {
      if (isTpmResponseError(e, RC.HANDLE)) return undefined;
      throw e;
    });
    if (persistent !== undefined && isEkOf(alg, persistent.public)) return fn(EK_HANDLE[alg], persistent.public, persistent.publicBytes);
    return withTransient(
      tpm,
      () => createPrimary(tpm, { hierarchy: TPM_RH.ENDORSEMENT, template: EK_TEMPLATES[alg] }),
      (ek) => fn(ek.handle, ek.public, ek.publicBytes),
    );
  }

  async #nvPublicOrUndefined(tpm: TpmClient, index: number): Promise<NvReadPublicResult | undefined> {
    return nvReadPublic(tpm, index).catch((e: unknown) => {
      if (isTpmResponseError(e, RC.HANDLE)) return undefined;
      throw e;
    });
  }

  /** Reads a whole NV index with whichever authorization its attributes allow (owner, the index itself, platform). */
  async #readIndex(tpm: TpmClient, nv: NvReadPublicResult): Promise<Buffer> {
    const a = nv.public.attributes;
    const authHandle = a & TPMA_NV.OWNERREAD ? TPM_RH.OWNER : a & TPMA_NV.AUTHREAD ? nv.public.nvIndex : TPM_RH.PLATFORM;
    return nvRead(tpm, { index: nv.public.nvIndex, authHandle, size: nv.public.dataSize, chunkSize: this.#nvChunk });
  }

  endorsements(): Promise<readonly Endorsement[]> {
    return this.#op(async (tpm) => {
      const out: Endorsement[] = [];
      for (const algorithm of EK_ALGORITHMS) {
        const certIndex = await this.#nvPublicOrUndefined(tpm, EK_CERT_NV_INDEX[algorithm]);
        if (certIndex === undefined) continue;
        const certificate = derCertificate(await this.#readIndex(tpm, certIndex), `EK certificate at NV ${hex(EK_CERT_NV_INDEX[algorithm])}`);
        const publicBytes = await this.#withEk(tpm, algorithm, (_h, _p, bytes) => Promise.resolve(bytes));
        out.push({ algorithm, public: publicBytes, certificate });
      }
      return out;
    });
  }

  // --- attestation key --------------------------------------------------------------

  ensureAttestationKey(ek: EkAlgorithm): Promise<AttestationKey> {
    return this.#op(async (tpm) => {
      const handle = AK_HANDLE[ek];
      let ak = await this.#readObject(tpm, handle);
      if (ak === undefined) {
        await this.#createAttestationKey(tpm, ek, handle);
        ak = await readPublic(tpm, handle);
      }
      if (!isAttestationKey(ak.public)) throw new TrustlaunchError('TPM_OBJECT_INVALID', `the object at ${hex(handle)} is not an attestation key`);
      this.#verifiedAks.set(handle, ak.publicBytes);
      return { handle, public: ak.publicBytes, name: ak.name };
    });
  }

  async #readObject(tpm: TpmClient, handle: number): Promise<ReadPublicResult | undefined> {
    return readPublic(tpm, handle).catch((e: unknown) => {
      if (isTpmResponseError(e, RC.HANDLE)) return undefined;
      throw e;
    });
  }

  /** TPM2_Create under the EK (its USER authorization), TPM2_Load, TPM2_EvictControl to `handle`; transients flushed. */
  async #createAttestationKey(tpm: TpmClient, ek: EkAlgorithm, handle: number): Promise<void> {
    await this.#withEk(tpm, ek, async (ekHandle, ekPublic) => {
      const template = AK_TEMPLATES[this.#akAlgorithm];
      const created = await withEndorsementKeyAuth(tpm, ekPublic, (auth) => create(tpm, { parent: ekHandle, parentAuth: auth, template }));
      await withTransient(
        tpm,
        () => withEndorsementKeyAuth(tpm, ekPublic, (auth) => load(tpm, { parent: ekHandle, parentAuth: auth, private: created.private, publicBytes: created.publicBytes })),
        (loaded) => evictControl(tpm, { object: loaded.handle, persistentHandle: handle }),
      );
    });
  }

  /** The AK at `ak.handle` must be the key the caller holds. */
  async #checkAk(tpm: TpmClient, ak: AttestationKey): Promise<void> {
    const expected = Buffer.from(ak.public);
    if (this.#verifiedAks.get(ak.handle)?.equals(expected) === true) return;
    const present = await this.#readObject(tpm, ak.handle);
    if (present === undefined || !present.publicBytes.equals(expected) || !isAttestationKey(present.public)) {
      throw new TrustlaunchError('TPM_OBJECT_INVALID', `the object at ${hex(ak.handle)} is not this attestation key`);
    }
    this.#verifiedAks.set(ak.handle, expected);
  }

  async activateCredential(ak: AttestationKey, ek: EkAlgorithm, credentialBlob: Uint8Array, encryptedSecret: Uint8Array): Promise<Uint8Array> {
    if (credentialBlob.length > BOUNDS.ID_OBJECT || encryptedSecret.length > BOUNDS.ENCRYPTED_SECRET) {
      throw new TrustlaunchError('CREDENTIAL_INTEGRITY', 'the credential blob or encrypted secret is larger than any TPM accepts');
    }
    return this.#op(async (tpm) => {
      await this.#checkAk(tpm, ak);
      return this.#withEk(tpm, ek, (ekHandle, ekPublic) =>
        withEndorsementKeyAuth(tpm, ekPublic, (keyAuth) =>
          tpmActivateCredential(tpm, { activateHandle: ak.handle, keyHandle: ekHandle, keyAuth, credentialBlob, secret: encryptedSecret }),
        ),
      ).catch((e: unknown) => mapTpmError(e, CREDENTIAL_ERRORS, 'TPM2_ActivateCredential refused the credential'));
    });
  }

  async quote(ak: AttestationKey, pcrs: readonly number[], qualifyingData: Uint8Array): Promise<QuoteResult> {
    if (qualifyingData.length > BOUNDS.DATA) {
      throw new TrustlaunchError('TPM_PARSE_ERROR', `qualifyingData of ${qualifyingData.length} bytes exceeds TPM2B_DATA (TPM_RC_SIZE)`);
    }
    const selection = [pcrSelection(TPM_ALG.SHA256, pcrs)];
    return this.#op(async (tpm) => {
      await this.#checkAk(tpm, ak);
      return tpmQuote(tpm, { signHandle: ak.handle, qualifyingData, pcrs: selection }).catch((e: unknown) =>
        mapTpmError(e, OBJECT_ERRORS, 'TPM2_Quote'),
      );
    });
  }

  // --- PCRs ---------------------------------------------------------------------------

  async pcrExtend(pcr: number, digest: Uint8Array): Promise<void> {
    if (digest.length !== 32) throw new RangeError('a SHA-256 PCR extend takes a 32-byte digest');
    return this.#op((tpm) => pcrExtend(tpm, pcr, [{ hashAlg: TPM_ALG.SHA256, digest }]));
  }

  pcrRead(pcrs: readonly number[]): Promise<ReadonlyMap<number, Uint8Array>> {
    return this.#op((tpm) => pcrReadSha256(tpm, pcrs));
  }

  // --- NV -----------------------------------------------------------------------------

  #checkIndex(index: number): void {
    if (!Number.isInteger(index) || index >>> 24 !== TPM_HT.NV_INDEX) {
      throw new TrustlaunchError('UNSUPPORTED', `${Number.isInteger(index) ? hex(index) : String(index)} is not an NV index handle (TPM_RC_VALUE)`);
    }
  }

  async nvDefine(index: number, attributes: NvIndexAttributes): Promise<void> {
    this.#checkIndex(index);
    if (!Number.isInteger(attributes.size) || attributes.size < 1 || attributes.size > NV_INDEX_MAX) {
      throw new TrustlaunchError('NV_SIZE_EXCEEDED', `NV index size ${attributes.size} outside 1..${NV_INDEX_MAX}`, { detail: { index } });
    }
    // Owner and index authorization (both the empty authValue), no dictionary-attack counting.
    const bits = TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA | (attributes.writeLockable === true ? TPMA_NV.WRITE_STCLEAR : 0);
    return this.#op((tpm) =>
      nvDefineSpace(tpm, { public: { nvIndex: index, nameAlg: TPM_ALG.SHA256, attributes: bits >>> 0, authPolicy: new Uint8Array(0), dataSize: attributes.size } }).catch((e: unknown) =>
        mapTpmError(e, NV_ERRORS, `NV_DefineSpace ${hex(index)}`, { index }),
      ),
    );
  }

  async nvWrite(index: number, data: Uint8Array, offset = 0): Promise<void> {
    this.#checkIndex(index);
    return this.#op(async (tpm) => {
      try {
        const nv = await nvReadPublic(tpm, index);
        // Checked before the first chunk, so a too-long write changes nothing.
        if (!Number.isInteger(offset) || offset < 0 || offset + data.length > nv.public.dataSize) {
          throw new TrustlaunchError('NV_SIZE_EXCEEDED', `writing ${data.length} bytes at ${offset} overruns NV index ${hex(index)} of ${nv.public.dataSize} bytes`, { detail: { index } });
        }
        await nvWrite(tpm, { index, data, offset, chunkSize: this.#nvChunk });
      } catch (e) {
        mapTpmError(e, NV_ERRORS, `NV_Write ${hex(index)}`, { index });
      }
    });
  }

  async nvRead(index: number): Promise<Uint8Array> {
    this.#checkIndex(index);
    return this.#op(async (tpm) => {
      try {
        return await this.#readIndex(tpm, await nvReadPublic(tpm, index));
      } catch (e) {
        return mapTpmError(e, NV_ERRORS, `NV_Read ${hex(index)}`, { index });
      }
    });
  }

  async nvSize(index: number): Promise<number | undefined> {
    this.#checkIndex(index);
    return this.#op(async (tpm) => (await this.#nvPublicOrUndefined(tpm, index))?.public.dataSize);
  }

  async nvWriteLock(index: number): Promise<void> {
    this.#checkIndex(index);
    return this.#op((tpm) => nvWriteLock(tpm, { index }).catch((e: unknown) => mapTpmError(e, NV_ERRORS, `NV_WriteLock ${hex(index)}`, { index })));
  }

  async nvUndefine(index: number): Promise<void> {
    this.#checkIndex(index);
    return this.#op((tpm) => nvUndefineSpace(tpm, { index }).catch((e: unknown) => mapTpmError(e, NV_ERRORS, `NV_UndefineSpace ${hex(index)}`, { index })));
  }
}
