// TPM2B_* sized buffers (Part 2 §10.4, §10.5.3, §11.2.4.5, §11.2.5.1, §11.4.33, §12.4.3):
// UINT16 size ‖ bytes, each with its own upper bound.
import { BOUNDS } from '../constants.js';
import type { TpmReader } from '../marshal/reader.js';
import type { TpmWriter } from '../marshal/writer.js';

export interface Tpm2bCodec {
  readonly name: string;
  readonly max: number;
  read(r: TpmReader, field?: string): Uint8Array;
  write(w: TpmWriter, data: Uint8Array): void;
}

function tpm2b(name: string, max: number): Tpm2bCodec {
  return {
    name,
    max,
    read: (r, field = name) => r.sized(field, max),
    write: (w, data) => {
      w.sized(data, max, name);
    },
  };
}

/** TPM2B_DIGEST (Part 2 §10.4.2). */
export const Tpm2bDigest = tpm2b('TPM2B_DIGEST', BOUNDS.DIGEST);
/** TPM2B_DATA (Part 2 §10.4.3): qualifying data, extraData. */
export const Tpm2bData = tpm2b('TPM2B_DATA', BOUNDS.DATA);
/** TPM2B_NAME (Part 2 §10.5.3): nameAlg ‖ digest, or a handle. */
export const Tpm2bName = tpm2b('TPM2B_NAME', BOUNDS.NAME);
/** TPM2B_MAX_NV_BUFFER (Part 2 §10.4.9). */
export const Tpm2bMaxNvBuffer = tpm2b('TPM2B_MAX_NV_BUFFER', BOUNDS.NV_BUFFER);
/** TPM2B_PUBLIC_KEY_RSA (Part 2 §11.2.4.5): the modulus. */
export const Tpm2bPublicKeyRsa = tpm2b('TPM2B_PUBLIC_KEY_RSA', BOUNDS.RSA_KEY_BYTES);
/** TPM2B_ECC_PARAMETER (Part 2 §11.2.5.1): one coordinate or scalar. */
export const Tpm2bEccParameter = tpm2b('TPM2B_ECC_PARAMETER', BOUNDS.ECC_KEY_BYTES);
/** TPM2B_ENCRYPTED_SECRET (Part 2 §11.4.33): RSA-OAEP ciphertext or a marshalled TPMS_ECC_POINT. */
export const Tpm2bEncryptedSecret = tpm2b('TPM2B_ENCRYPTED_SECRET', BOUNDS.ENCRYPTED_SECRET);
/** TPM2B_ID_OBJECT (Part 2 §12.4.3): a marshalled TPMS_ID_OBJECT. */
export const Tpm2bIdObject = tpm2b('TPM2B_ID_OBJECT', BOUNDS.ID_OBJECT);
/** TPM2B_ATTEST (Part 2 §10.12.13): a marshalled TPMS_ATTEST. */
export const Tpm2bAttest = tpm2b('TPM2B_ATTEST', BOUNDS.ATTEST);
