// The two halves of a credential (Part 1 §24 "Credential Protection"): TPMS_ID_OBJECT
// (Part 2 §12.4.2) and the seed's encryption, TPM2B_ENCRYPTED_SECRET (§11.4.33).
// TPMS_ID_OBJECT marshals as TPM2B_DIGEST integrityHMAC ‖ encIdentity, where encIdentity
// is the CFB encryption of a marshalled TPM2B_DIGEST and runs to the end of the structure.
import { BOUNDS } from '../constants.js';
import { parseWhole, type TpmReader } from '../marshal/reader.js';
import { TpmWriter } from '../marshal/writer.js';
import { Tpm2bDigest } from './sized.js';

export interface TpmsIdObject {
  readonly integrityHMAC: Uint8Array;
  /** Encrypted TPM2B_DIGEST of the credential (size field included in the ciphertext). */
  readonly encIdentity: Uint8Array;
}

/** Reads a TPMS_ID_OBJECT filling the rest of `r` (it is always the contents of a TPM2B_ID_OBJECT). */
export function readTpmsIdObject(r: TpmReader): TpmsIdObject {
  const integrityHMAC = Tpm2bDigest.read(r, 'integrityHMAC');
  // encIdentity = CFB(2-byte size ‖ credential): at most 2 + sizeof(TPMU_HA) bytes.
  const rest = r.remaining;
  if (rest < 2 || rest > 2 + BOUNDS.DIGEST) r.fail('encIdentity', `length ${rest} outside 2..${2 + BOUNDS.DIGEST}`);
  return { integrityHMAC, encIdentity: r.bytes(rest, 'encIdentity') };
}

export function writeTpmsIdObject(w: TpmWriter, o: TpmsIdObject): void {
  Tpm2bDigest.write(w, o.integrityHMAC);
  w.bytes(o.encIdentity);
}

/** Parses the contents of a TPM2B_ID_OBJECT (the credentialBlob of TPM2_MakeCredential). */
export function parseTpmsIdObject(bytes: Uint8Array): TpmsIdObject {
  if (bytes.length > BOUNDS.ID_OBJECT) {
    return parseWhole(bytes, 'TPMS_ID_OBJECT', (r) => r.fail('size', `${bytes.length} bytes exceed sizeof(TPMS_ID_OBJECT) ${BOUNDS.ID_OBJECT}`));
  }
  return parseWhole(bytes, 'TPMS_ID_OBJECT', readTpmsIdObject);
}

export function marshalTpmsIdObject(o: TpmsIdObject): Buffer {
  const w = new TpmWriter(140);
  writeTpmsIdObject(w, o);
  return w.finish();
}
