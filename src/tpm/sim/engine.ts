// The software TPM engine: TPM 2.0 semantics over a state (state.ts) that lives in any
// StateStore, with PCRs it owns or that are provided from outside (a storage-only device
// runs the same engine with the mini-domain's PCR bank). Commands keep the TPM's rules:
// nothing before TPM2_Startup, Quote only with restricted signing keys, TPM2_Sign with a
// restricted key only for digests the TPM hashed itself and found not to start with
// TPM_GENERATED_VALUE (the hash-check ticket), ActivateCredential checks integrity first.
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { TrustlaunchError } from '../../protocol/errors.js';
import { fromBase64url, toBase64url } from '../../protocol/base64url.js';
import { PCR_COUNT } from '../../protocol/pcrs.js';
import { BOUNDS, ECC_CURVES, TPM_ALG, TPM_GENERATED_VALUE, TPM_RH, TPM_ST } from '../constants.js';
import { activateCredential } from '../crypto/credential.js';
import { tpmHash, tpmHmac } from '../crypto/hash.js';
import { handleName, objectName, qualifiedName } from '../crypto/name.js';
import { pcrDigest } from '../crypto/pcr-digest.js';
import { publicAreaFor } from '../crypto/public-key.js';
import { signTpmt } from '../crypto/signature.js';
import { PcrBank, type PcrBankLike } from '../pcr-bank.js';
import { marshalTpmsAttest, type TpmsAttest, type TpmuAttest } from '../structures/attest.js';
import { hasAttributes } from '../structures/object-attributes.js';
import { pcrSelection } from '../structures/pcr-selection.js';
import { marshalTpmtPublic, parseTpmtPublic, type TpmtPublic } from '../structures/public.js';
import { marshalTpmtSignature } from '../structures/signature.js';
import { NvSpace, type NvDefinition } from './nv.js';
import { parseState, serializeState, type SimObject, type SimState } from './state.js';
import type { StateStore } from './store.js';

export interface EngineOptions {
  /** PCRs kept outside the engine (storage-only devices); default: the engine's own bank. */
  readonly pcrs?: PcrBankLike;
  /** Milliseconds from a monotonic source; default performance.now. */
  readonly now?: () => number;
}

export interface LoadedObject {
  readonly handle: number;
  readonly public: TpmtPublic;
  /** TPMT_PUBLIC bytes as stored (their hash is the Name). */
  readonly publicBytes: Buffer;
  readonly name: Buffer;
  readonly qualifiedName: Buffer;
  readonly privateKey: KeyObject;
}

/** TPMT_TK_HASHCHECK (Part 2 §10.7.6): proof that the TPM hashed data not starting with TPM_GENERATED_VALUE. */
export interface HashCheckTicket {
  readonly tag: typeof TPM_ST.HASHCHECK;
  readonly hierarchy: number;
  readonly digest: Buffer;
}

export interface SignedAttestation {
  readonly attest: Buffer;
  readonly signature: Buffer;
}

const STATE_MISSING = 'no software TPM state: run the manufacturing step first';

function ticketHmac(proof: Buffer, digest: Uint8Array): Buffer {
  const tag = Buffer.alloc(2);
  tag.writeUInt16BE(TPM_ST.HASHCHECK);
  return tpmHmac(TPM_ALG.SHA256, proof, tag, digest);
}

/** A fresh key pair of the template's type and size (the TPM's TPM2_Create key generation). */
function generateKeyFor(template: TpmtPublic): { privateKey: KeyObject; publicKey: KeyObject } {
  if (template.type === TPM_ALG.RSA) return generateKeyPairSync('rsa', { modulusLength: template.parameters.keyBits, publicExponent: 65537 });
  const curve = template.type === TPM_ALG.ECC ? ECC_CURVES.get(template.parameters.curveID)?.node : undefined;
  if (curve === undefined) throw new RangeError('only RSA and NIST ECC keys');
  return generateKeyPairSync('ec', { namedCurve: curve });
}

function objectError(message: string): TrustlaunchError {
  return new TrustlaunchError('TPM_OBJECT_INVALID', message);
}

export class TpmEngine {
  readonly #store: StateStore;
  readonly #state: SimState;
  readonly #nv: NvSpace;
  readonly #pcrs: PcrBankLike;
  readonly #now: () => number;
  readonly #objects = new Map<number, LoadedObject>();
  #clockBase: number;
  #clockAtBase: number;
  #started = false;
  #persisting: Promise<void> = Promise.resolve();

  private constructor(store: StateStore, state: SimState, options: EngineOptions) {
    this.#store = store;
    this.#state = state;
    this.#nv = new NvSpace(state.nv);
    this.#pcrs = options.pcrs ?? new PcrBank();
    this.#now = options.now ?? (() => performance.now());
    this.#clockBase = this.#now();
    this.#clockAtBase = state.clock;
  }

  /** Loads the engine from `store`; DEVICE_NOT_READY when the store holds no state. */
  static async load(store: StateStore, options: EngineOptions = {}): Promise<TpmEngine> {
    const bytes = await store.load();
    if (bytes === undefined) throw new TrustlaunchError('DEVICE_NOT_READY', STATE_MISSING);
    return new TpmEngine(store, parseState(bytes), options);
  }

  /** Creates an engine over a fresh state (the manufacturing step) and stores it. */
  static async create(store: StateStore, init: { manufacturer: string; firmwareVersion: bigint }, options: EngineOptions = {}): Promise<TpmEngine> {
    const state: SimState = {
      format: 'trustlaunch-sim-tpm/1',
      manufacturer: init.manufacturer,
      firmwareVersion: init.firmwareVersion.toString(16).padStart(16, '0'),
      proof: toBase64url(randomBytes(32)),
      clock: 0,
      resetCount: 0,
      restartCount: 0,
      objects: [],
      nv: [],
    };
    const engine = new TpmEngine(store, state, options);
    await engine.#persist();
    return engine;
  }

  // --- persistence ---------------------------------------------------------------------

  #clock(): number {
    return this.#clockAtBase + Math.max(0, Math.floor(this.#now() - this.#clockBase));
  }

  /** Stores the current state; stores run one after another, each writing the newest state. */
  #persist(): Promise<void> {
    const run = async (): Promise<void> => {
      const now = this.#clock();
      this.#state.clock = now;
      this.#clockAtBase = now;
      this.#clockBase = this.#now();
      await this.#store.store(serializeState(this.#state));
    };
    const next = this.#persisting.then(run, run);
    this.#persisting = next;
    return next;
  }

  #requireStarted(): void {
    if (!this.#started) throw new TrustlaunchError('DEVICE_NOT_READY', 'the TPM has not been started (TPM_RC_INITIALIZE)');
  }

  // --- lifecycle -----------------------------------------------------------------------

  /** TPM2_Startup(CLEAR), a TPM Reset: PCRs to their initial values, resetCount + 1, STCLEAR locks end. */
  async startup(): Promise<void> {
    this.#pcrs.reset();
    this.#nv.startupClear();
    this.#state.resetCount = (this.#state.resetCount + 1) >>> 0;
    this.#state.restartCount = 0;
    this.#started = true;
    await this.#persist();
  }

  /** TPM2_Shutdown(CLEAR): the clock is saved; commands need another startup. */
  async shutdown(): Promise<void> {
    this.#started = false;
    await this.#persist();
  }

  get manufacturer(): string {
    return this.#state.manufacturer;
  }

  get firmwareVersion(): bigint {
    return BigInt(`0x${this.#state.firmwareVersion}`);
  }

  // --- objects -------------------------------------------------------------------------

  #load(o: SimObject): LoadedObject {
    const publicBytes = fromBase64url(o.public, 'TPM_PARSE_ERROR');
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: fromBase64url(o.private, 'TPM_PARSE_ERROR'), format: 'der', type: 'pkcs8' });
    } catch (cause) {
      throw new TrustlaunchError('TPM_PARSE_ERROR', `software TPM state: the private key of object 0x${o.handle.toString(16)} is damaged`, { cause });
    }
    return {
      handle: o.handle,
      public: parseTpmtPublic(publicBytes),
      publicBytes,
      name: objectName(publicBytes),
      qualifiedName: fromBase64url(o.qualifiedName, 'TPM_PARSE_ERROR'),
      privateKey,
    };
  }

  /** The persistent object at `handle`; TPM_OBJECT_INVALID when there is none (TPM_RC_HANDLE). */
  object(handle: number): LoadedObject {
    const cached = this.#objects.get(handle);
    if (cached !== undefined) return cached;
    const stored = this.#state.objects.find((o) => o.handle === handle);
    if (stored === undefined) throw objectError(`no object at handle 0x${handle.toString(16)} (TPM_RC_HANDLE)`);
    const loaded = this.#load(stored);
    this.#objects.set(handle, loaded);
    return loaded;
  }

  hasObject(handle: number): boolean {
    return this.#state.objects.some((o) => o.handle === handle);
  }

  /**
   * Creates a key from `template` under `parent` (a hierarchy for a primary key, or a
   * restricted decryption key) and persists it at `handle` (TPM2_Create + TPM2_EvictControl).
   */
  async createPersistent(parent: number, template: TpmtPublic, handle: number): Promise<LoadedObject> {
    if (this.hasObject(handle)) throw new TrustlaunchError('CONFLICT', `handle 0x${handle.toString(16)} is occupied (TPM_RC_NV_DEFINED)`);
    if (handle >>> 24 !== 0x81) throw new RangeError('a persistent handle is 0x81xxxxxx');
    let parentQn: Buffer;
    if (parent === TPM_RH.ENDORSEMENT || parent === TPM_RH.OWNER || parent === TPM_RH.PLATFORM) {
      parentQn = handleName(parent);
    } else {
      const p = this.object(parent);
      if (!hasAttributes(p.public.objectAttributes, 'restricted', 'decrypt')) throw objectError('the parent is not a storage key (TPM_RC_TYPE)');
      parentQn = p.qualifiedName;
    }
    const { privateKey, publicKey } = generateKeyFor(template);
    const pub = publicAreaFor(template, publicKey);
    const publicBytes = marshalTpmtPublic(pub);
    const name = objectName(publicBytes);
    this.#state.objects.push({
      handle,
      parent,
      public: toBase64url(publicBytes),
      private: toBase64url(privateKey.export({ format: 'der', type: 'pkcs8' })),
      qualifiedName: toBase64url(qualifiedName(parentQn, name, pub.nameAlg)),
    });
    await this.#persist();
    return this.object(handle);
  }

  /** TPM2_EvictControl removing a persistent object. */
  async evict(handle: number): Promise<void> {
    const i = this.#state.objects.findIndex((o) => o.handle === handle);
    if (i < 0) throw objectError(`no object at handle 0x${handle.toString(16)}`);
    this.#state.objects.splice(i, 1);
    this.#objects.delete(handle);
    await this.#persist();
  }

  // --- attestation ---------------------------------------------------------------------

  #signingKey(handle: number, restricted: boolean): LoadedObject & { scheme: number; hashAlg: number } {
    const o = this.object(handle);
    const attrs = o.public.objectAttributes;
    if (!hasAttributes(attrs, 'sign') || (restricted && !hasAttributes(attrs, 'restricted'))) {
      throw objectError(`object 0x${handle.toString(16)} is not a ${restricted ? 'restricted ' : ''}signing key (TPM_RC_KEY)`);
    }
    if (o.public.type !== TPM_ALG.RSA && o.public.type !== TPM_ALG.ECC) throw objectError('not an asymmetric key');
    const { scheme, hashAlg } = o.public.parameters.scheme;
    if (hashAlg === undefined) throw objectError('the key has no signing scheme (TPM_RC_SCHEME)');
    return { ...o, scheme, hashAlg };
  }

  #attest(signer: LoadedObject & { scheme: number; hashAlg: number }, qualifyingData: Uint8Array, attested: TpmuAttest, type: number): SignedAttestation {
    if (qualifyingData.length > BOUNDS.DATA) throw new TrustlaunchError('TPM_PARSE_ERROR', `qualifyingData of ${qualifyingData.length} bytes exceeds TPM2B_DATA (TPM_RC_SIZE)`);
    const a: TpmsAttest = {
      magic: TPM_GENERATED_VALUE,
      type,
      qualifiedSigner: signer.qualifiedName,
      extraData: Buffer.from(qualifyingData),
      clockInfo: { clock: BigInt(this.#clock()), resetCount: this.#state.resetCount, restartCount: this.#state.restartCount, safe: true },
      firmwareVersion: this.firmwareVersion,
      attested,
    };
    const attest = marshalTpmsAttest(a);
    const signature = marshalTpmtSignature(signTpmt(signer.privateKey, signer.scheme, signer.hashAlg, attest));
    return { attest, signature };
  }

  /** TPM2_Quote (Part 3 §18.4) over SHA-256 PCRs `pcrs` with the restricted signing key at `handle`. */
  quote(handle: number, pcrs: readonly number[], qualifyingData: Uint8Array): SignedAttestation {
    this.#requireStarted();
    const signer = this.#signingKey(handle, true);
    for (const p of pcrs) if (!Number.isInteger(p) || p < 0 || p >= PCR_COUNT) throw new RangeError(`PCR index ${p}`);
    const selection = [pcrSelection(TPM_ALG.SHA256, pcrs)];
    const digest = pcrDigest(signer.hashAlg, selection, (_bank, i) => this.#pcrs.read(i)) as Buffer;
    return this.#attest(signer, qualifyingData, { kind: 'quote', pcrSelect: selection, pcrDigest: digest }, TPM_ST.ATTEST_QUOTE);
  }

  /** TPM2_Certify (Part 3 §18.2): the signing key vouches for another object's Name. */
  certify(objectHandle: number, signHandle: number, qualifyingData: Uint8Array): SignedAttestation {
    this.#requireStarted();
    const o = this.object(objectHandle);
    const signer = this.#signingKey(signHandle, false);
    return this.#attest(signer, qualifyingData, { kind: 'certify', name: o.name, qualifiedName: o.qualifiedName }, TPM_ST.ATTEST_CERTIFY);
  }

  /** TPM2_Hash (Part 3 §15.4) in the owner hierarchy: a ticket only when the data does not start with TPM_GENERATED_VALUE. */
  hash(data: Uint8Array): { digest: Buffer; ticket: HashCheckTicket | undefined } {
    this.#requireStarted();
    const digest = tpmHash(TPM_ALG.SHA256, data);
    const generated = data.length >= 4 && Buffer.from(data.subarray(0, 4)).readUInt32BE(0) === TPM_GENERATED_VALUE;
    if (generated) return { digest, ticket: undefined };
    return { digest, ticket: { tag: TPM_ST.HASHCHECK, hierarchy: TPM_RH.OWNER, digest: ticketHmac(fromBase64url(this.#state.proof), digest) } };
  }

  /**
   * TPM2_Sign (Part 3 §20.2) of data whose SHA-256 is `digest`. A restricted key signs only
   * with a valid hash-check ticket for that digest (TPM_RC_TICKET otherwise).
   * Signing here takes the data itself because node signs messages, not digests; the
   * ticket still binds the digest of exactly these bytes.
   */
  sign(handle: number, data: Uint8Array, ticket: HashCheckTicket | undefined): Buffer {
    this.#requireStarted();
    const signer = this.#signingKey(handle, false);
    if (hasAttributes(signer.public.objectAttributes, 'restricted')) {
      const digest = tpmHash(TPM_ALG.SHA256, data);
      if (ticket === undefined || !ticket.digest.equals(ticketHmac(fromBase64url(this.#state.proof), digest))) {
        throw new TrustlaunchError('TPM_RESPONSE_ERROR', 'a restricted key signs only digests with a valid hash-check ticket (TPM_RC_TICKET)');
      }
    }
    return marshalTpmtSignature(signTpmt(signer.privateKey, signer.scheme, signer.hashAlg, data));
  }

  /** TPM2_ActivateCredential (Part 3 §12.5): `activateHandle` names the credential's object, `keyHandle` the EK. */
  activateCredential(activateHandle: number, keyHandle: number, credentialBlob: Uint8Array, encryptedSecret: Uint8Array): Buffer {
    this.#requireStarted();
    const target = this.object(activateHandle);
    const ek = this.object(keyHandle);
    if (!hasAttributes(ek.public.objectAttributes, 'restricted', 'decrypt')) throw objectError('the key is not a restricted decryption key (TPM_RC_TYPE)');
    return activateCredential(ek.public, ek.privateKey, target.name, credentialBlob, encryptedSecret);
  }

  // --- PCRs ----------------------------------------------------------------------------

  pcrExtend(index: number, digest: Uint8Array): void {
    this.#requireStarted();
    this.#pcrs.extend(index, digest);
  }

  pcrRead(index: number): Buffer {
    this.#requireStarted();
    return this.#pcrs.read(index);
  }

  // --- NV ------------------------------------------------------------------------------

  async nvDefine(index: number, definition: NvDefinition): Promise<void> {
    this.#requireStarted();
    this.#nv.define(index, definition);
    await this.#persist();
  }

  async nvWrite(index: number, data: Uint8Array, offset = 0): Promise<void> {
    this.#requireStarted();
    this.#nv.write(index, data, offset);
    await this.#persist();
  }

  nvRead(index: number): Buffer {
    this.#requireStarted();
    return this.#nv.read(index);
  }

  nvSize(index: number): number | undefined {
    this.#requireStarted();
    return this.#nv.size(index);
  }

  async nvWriteLock(index: number): Promise<void> {
    this.#requireStarted();
    this.#nv.writeLock(index);
    await this.#persist();
  }

  async nvUndefine(index: number): Promise<void> {
    this.#requireStarted();
    this.#nv.undefine(index);
    await this.#persist();
  }
}
