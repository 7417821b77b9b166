// TPM2_Quote (Part 3 §18.4) and TPM2_ActivateCredential (Part 3 §12.5).
import { BOUNDS, TPM_ALG } from '../../constants.js';
import { writeTpmlPcrSelection, type TpmlPcrSelection } from '../../structures/pcr-selection.js';
import { Tpm2bAttest, Tpm2bData, Tpm2bDigest, Tpm2bEncryptedSecret, Tpm2bIdObject } from '../../structures/sized.js';
import { marshalTpmtSignature, readTpmtSignature } from '../../structures/signature.js';
import { EMPTY_AUTH, type Authorization } from '../authorization.js';
import type { TpmClient } from '../client.js';
import { TPM_CC } from '../constants.js';

export interface QuoteOptions {
  readonly signHandle: number;
  readonly auth?: Authorization;
  /** extraData of the TPMS_ATTEST (at most sizeof(TPMT_HA) = 66 bytes). */
  readonly qualifyingData: Uint8Array;
  readonly pcrs: TpmlPcrSelection;
}

export interface Quote {
  /** TPMS_ATTEST bytes exactly as signed. */
  readonly attest: Buffer;
  /** TPMT_SIGNATURE bytes. */
  readonly signature: Buffer;
}

/** TPM2_Quote with the key's own scheme (inScheme = TPM_ALG_NULL, as a restricted key requires). */
export function quote(tpm: TpmClient, o: QuoteOptions): Promise<Quote> {
  if (o.qualifyingData.length > BOUNDS.DATA) throw new RangeError(`qualifyingData has at most ${BOUNDS.DATA} bytes`);
  return tpm.run({
    code: TPM_CC.Quote,
    handles: [o.signHandle],
    authorizations: [o.auth ?? EMPTY_AUTH],
    parameters: (w) => {
      Tpm2bData.write(w, o.qualifyingData);
      w.u16(TPM_ALG.NULL);
      writeTpmlPcrSelection(w, o.pcrs);
    },
    response: (r) => ({ attest: Buffer.from(Tpm2bAttest.read(r, 'quoted')), signature: marshalTpmtSignature(readTpmtSignature(r)) }),
  });
}

export interface ActivateCredentialOptions {
  /** The object the credential names (the AK); Part 3 gives it the ADMIN role. */
  readonly activateHandle: number;
  readonly activateAuth?: Authorization;
  /** The key that decrypts the seed (the EK): a policy session when its userWithAuth is clear. */
  readonly keyHandle: number;
  readonly keyAuth: Authorization;
  /** TPM2B_ID_OBJECT contents. */
  readonly credentialBlob: Uint8Array;
  /** TPM2B_ENCRYPTED_SECRET contents. */
  readonly secret: Uint8Array;
}

/** TPM2_ActivateCredential: the credential, if the blob was made for this object's Name under this key. */
export function activateCredential(tpm: TpmClient, o: ActivateCredentialOptions): Promise<Buffer> {
  return tpm.run({
    code: TPM_CC.ActivateCredential,
    handles: [o.activateHandle, o.keyHandle],
    authorizations: [o.activateAuth ?? EMPTY_AUTH, o.keyAuth],
    parameters: (w) => {
      Tpm2bIdObject.write(w, o.credentialBlob);
      Tpm2bEncryptedSecret.write(w, o.secret);
    },
    response: (r) => Buffer.from(Tpm2bDigest.read(r, 'certInfo')),
  });
}
