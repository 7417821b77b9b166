// The structures of object creation a command client writes or skips:
// TPM2B_SENSITIVE_CREATE (Part 2 §11.1.16), TPM2B_CREATION_DATA (§15.2, kept as bytes),
// TPMT_TK_CREATION (§10.7.3), TPMT_TK_AUTH (§10.7.5) and TPM2B_PRIVATE (§12.3.7).
import { BOUNDS } from '../../constants.js';
import type { TpmReader } from '../../marshal/reader.js';
import type { TpmWriter } from '../../marshal/writer.js';
import { Tpm2bDigest } from '../../structures/sized.js';

/** TPMS_SENSITIVE_CREATE (Part 2 §11.1.15): the new object's authValue and, for sealed data, its data. */
export interface TpmsSensitiveCreate {
  readonly userAuth: Uint8Array;
  readonly data: Uint8Array;
}

export const EMPTY_SENSITIVE: TpmsSensitiveCreate = { userAuth: new Uint8Array(0), data: new Uint8Array(0) };

/** MAX_SYM_DATA (128) bounds TPM2B_SENSITIVE_DATA for a sealed object. */
const SENSITIVE_DATA_MAX = 128;

export function writeTpm2bSensitiveCreate(w: TpmWriter, s: TpmsSensitiveCreate): void {
  w.sizedBlock((x) => {
    x.sized(s.userAuth, BOUNDS.DIGEST, 'TPM2B_AUTH');
    x.sized(s.data, SENSITIVE_DATA_MAX, 'TPM2B_SENSITIVE_DATA');
  }, 'TPM2B_SENSITIVE_CREATE');
}

/** TPM2B_CREATION_DATA: a TPMS_CREATION_DATA this client does not interpret (bounded: PCR selection, digests, names, outsideInfo). */
export const CREATION_DATA_MAX = 1024;

export function readTpm2bCreationData(r: TpmReader): Uint8Array {
  return r.sized('creationData', CREATION_DATA_MAX);
}

/** TPMT_TK_CREATION (Part 2 §10.7.3) and TPMT_TK_AUTH (§10.7.5) share one shape. */
export interface TpmtTicket {
  readonly tag: number;
  readonly hierarchy: number;
  readonly digest: Uint8Array;
}

export function readTpmtTicket(r: TpmReader, field: string): TpmtTicket {
  return { tag: r.u16(`${field}.tag`), hierarchy: r.u32(`${field}.hierarchy`), digest: Tpm2bDigest.read(r, `${field}.digest`) };
}

/** TPM2B_PRIVATE (Part 2 §12.3.7): the wrapped sensitive area, opaque to everyone but the TPM. sizeof(_PRIVATE) for RSA-4096 stays under 1024. */
export const PRIVATE_MAX = 1024;
