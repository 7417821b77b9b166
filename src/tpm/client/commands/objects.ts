// Object commands: TPM2_CreatePrimary (Part 3 §24.1), TPM2_Create (§12.1), TPM2_Load
// (§12.2), TPM2_ReadPublic (§12.4), TPM2_FlushContext (§28.4), TPM2_EvictControl (§28.5).
// Public areas come back as the TPM's own TPMT_PUBLIC bytes (their hash is the Name) and
// the Name the TPM reports is checked against them.
import { TrustlaunchError } from '../../../protocol/errors.js';
import { TPM_RH } from '../../constants.js';
import { objectName } from '../../crypto/name.js';
import type { TpmReader } from '../../marshal/reader.js';
import { writeTpmlPcrSelection } from '../../structures/pcr-selection.js';
import { TPM2B_PUBLIC_MAX, parseTpmtPublic, writeTpm2bPublic, type TpmtPublic } from '../../structures/public.js';
import { Tpm2bData, Tpm2bDigest, Tpm2bName } from '../../structures/sized.js';
import { EMPTY_AUTH, type Authorization } from '../authorization.js';
import type { TpmClient } from '../client.js';
import { TPM_CC } from '../constants.js';
import { EMPTY_SENSITIVE, PRIVATE_MAX, readTpm2bCreationData, readTpmtTicket, writeTpm2bSensitiveCreate, type TpmsSensitiveCreate } from '../structures/creation.js';

/** A public area as the TPM returned it. */
export interface PublicArea {
  readonly public: TpmtPublic;
  /** TPMT_PUBLIC bytes exactly as the TPM marshalled them. */
  readonly publicBytes: Buffer;
  /** nameAlg ‖ H(publicBytes). */
  readonly name: Buffer;
}

export interface LoadedObject extends PublicArea {
  readonly handle: number;
}

/** Reads a TPM2B_PUBLIC keeping its bytes. */
function readPublicArea(r: TpmReader, field: string): { public: TpmtPublic; publicBytes: Buffer } {
  const bytes = Buffer.from(r.sized(field, TPM2B_PUBLIC_MAX));
  return { public: parseTpmtPublic(bytes), publicBytes: bytes };
}

/** The TPM's Name must be the hash of the public area it returned; anything else means the answer is not to be used. */
function checkedName(publicBytes: Buffer, reported: Uint8Array, command: string): Buffer {
  const name = objectName(publicBytes);
  if (!name.equals(reported)) throw new TrustlaunchError('TPM_PARSE_ERROR', `${command}: the Name the TPM reported is not the hash of the public area it returned`);
  return name;
}

export interface CreatePrimaryOptions {
  /** TPM_RH_OWNER, TPM_RH_ENDORSEMENT, TPM_RH_PLATFORM or TPM_RH_NULL. */
  readonly hierarchy: number;
  readonly template: TpmtPublic;
  /** Authorization of the hierarchy (default: empty password). */
  readonly auth?: Authorization;
  readonly sensitive?: TpmsSensitiveCreate;
}

/** TPM2_CreatePrimary: a transient primary key; the caller flushes it. */
export function createPrimary(tpm: TpmClient, o: CreatePrimaryOptions): Promise<LoadedObject> {
  return tpm.run({
    code: TPM_CC.CreatePrimary,
    handles: [o.hierarchy],
    authorizations: [o.auth ?? EMPTY_AUTH],
    parameters: (w) => {
      writeTpm2bSensitiveCreate(w, o.sensitive ?? EMPTY_SENSITIVE);
      writeTpm2bPublic(w, o.template);
      Tpm2bData.write(w, new Uint8Array(0));
      writeTpmlPcrSelection(w, []);
    },
    responseHandles: 1,
    response: (r, handles) => {
      const area = readPublicArea(r, 'outPublic');
      readTpm2bCreationData(r);
      Tpm2bDigest.read(r, 'creationHash');
      readTpmtTicket(r, 'creationTicket');
      const name = checkedName(area.publicBytes, Tpm2bName.read(r, 'name'), 'TPM2_CreatePrimary');
      return { handle: handles[0] ?? 0, ...area, name };
    },
  });
}

export interface CreateOptions {
  readonly parent: number;
  readonly parentAuth?: Authorization;
  readonly template: TpmtPublic;
  readonly sensitive?: TpmsSensitiveCreate;
}

export interface CreatedObject extends PublicArea {
  /** TPM2B_PRIVATE contents: the sensitive area wrapped by the parent. */
  readonly private: Buffer;
}

/** TPM2_Create: a key under `parent`, returned wrapped (load it with `load`). */
export function create(tpm: TpmClient, o: CreateOptions): Promise<CreatedObject> {
  return tpm.run({
    code: TPM_CC.Create,
    handles: [o.parent],
    authorizations: [o.parentAuth ?? EMPTY_AUTH],
    parameters: (w) => {
      writeTpm2bSensitiveCreate(w, o.sensitive ?? EMPTY_SENSITIVE);
      writeTpm2bPublic(w, o.template);
      Tpm2bData.write(w, new Uint8Array(0));
      writeTpmlPcrSelection(w, []);
    },
    response: (r) => {
      const priv = Buffer.from(r.sized('outPrivate', PRIVATE_MAX));
      const area = readPublicArea(r, 'outPublic');
      readTpm2bCreationData(r);
      Tpm2bDigest.read(r, 'creationHash');
      readTpmtTicket(r, 'creationTicket');
      return { private: priv, ...area, name: objectName(area.publicBytes) };
    },
  });
}

export interface LoadOptions {
  readonly parent: number;
  readonly parentAuth?: Authorization;
  readonly private: Uint8Array;
  readonly publicBytes: Uint8Array;
}

/** TPM2_Load: a transient copy of a created object; the caller flushes it. */
export function load(tpm: TpmClient, o: LoadOptions): Promise<LoadedObject> {
  const publicBytes = Buffer.from(o.publicBytes);
  const pub = parseTpmtPublic(publicBytes);
  return tpm.run({
    code: TPM_CC.Load,
    handles: [o.parent],
    authorizations: [o.parentAuth ?? EMPTY_AUTH],
    parameters: (w) => {
      w.sized(o.private, PRIVATE_MAX, 'TPM2B_PRIVATE');
      w.sized(publicBytes, TPM2B_PUBLIC_MAX, 'TPM2B_PUBLIC');
    },
    responseHandles: 1,
    response: (r, handles) => {
      const name = checkedName(publicBytes, Tpm2bName.read(r, 'name'), 'TPM2_Load');
      return { handle: handles[0] ?? 0, public: pub, publicBytes, name };
    },
  });
}

export interface ReadPublicResult extends PublicArea {
  readonly qualifiedName: Buffer;
}

/** TPM2_ReadPublic: the public area of a loaded or persistent object. */
export function readPublic(tpm: TpmClient, handle: number): Promise<ReadPublicResult> {
  return tpm.run({
    code: TPM_CC.ReadPublic,
    handles: [handle],
    response: (r) => {
      const area = readPublicArea(r, 'outPublic');
      const name = checkedName(area.publicBytes, Tpm2bName.read(r, 'name'), 'TPM2_ReadPublic');
      return { ...area, name, qualifiedName: Buffer.from(Tpm2bName.read(r, 'qualifiedName')) };
    },
  });
}

/** TPM2_FlushContext: frees a transient object or a session (the handle travels as a parameter). */
export function flushContext(tpm: TpmClient, handle: number): Promise<void> {
  return tpm.run({ code: TPM_CC.FlushContext, parameters: (w) => w.u32(handle >>> 0) });
}

export interface EvictControlOptions {
  /** TPM_RH_OWNER (default) or TPM_RH_PLATFORM. */
  readonly auth?: number;
  readonly authValue?: Authorization;
  /** A transient object to persist, or a persistent one to evict. */
  readonly object: number;
  readonly persistentHandle: number;
}

/** TPM2_EvictControl: makes a transient object persistent at `persistentHandle`, or removes a persistent one. */
export function evictControl(tpm: TpmClient, o: EvictControlOptions): Promise<void> {
  return tpm.run({
    code: TPM_CC.EvictControl,
    handles: [o.auth ?? TPM_RH.OWNER, o.object],
    authorizations: [o.authValue ?? EMPTY_AUTH],
    parameters: (w) => w.u32(o.persistentHandle >>> 0),
  });
}
