// TPMT_SIGNATURE (Part 2 §11.3.4): sigAlg selects TPMS_SIGNATURE_RSA (§11.3.1, RSASSA and
// RSAPSS), TPMS_SIGNATURE_ECC (§11.3.2, ECDSA, ECDAA, SM2, ECSCHNORR), TPMT_HA (HMAC) or
// nothing (NULL).
import { TPM_ALG, algName } from '../constants.js';
import { parseWhole, type TpmReader } from '../marshal/reader.js';
import { TpmWriter } from '../marshal/writer.js';
import { readHashAlg, readTpmtHa, writeTpmtHa, type TpmtHa } from './ha.js';
import { Tpm2bEccParameter, Tpm2bPublicKeyRsa } from './sized.js';

export interface TpmsSignatureRsa {
  readonly sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS;
  readonly hash: number;
  readonly sig: Uint8Array;
}
export interface TpmsSignatureEcc {
  readonly sigAlg: typeof TPM_ALG.ECDSA | typeof TPM_ALG.ECDAA | typeof TPM_ALG.SM2 | typeof TPM_ALG.ECSCHNORR;
  readonly hash: number;
  readonly signatureR: Uint8Array;
  readonly signatureS: Uint8Array;
}
export interface TpmsSignatureHmac {
  readonly sigAlg: typeof TPM_ALG.HMAC;
  readonly hmac: TpmtHa;
}
export interface TpmsSignatureNull {
  readonly sigAlg: typeof TPM_ALG.NULL;
}

export type TpmtSignature = TpmsSignatureRsa | TpmsSignatureEcc | TpmsSignatureHmac | TpmsSignatureNull;

export function readTpmtSignature(r: TpmReader): TpmtSignature {
  const sigAlg = r.u16('sigAlg');
  switch (sigAlg) {
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS:
      return { sigAlg, hash: readHashAlg(r, 'signature.hash'), sig: Tpm2bPublicKeyRsa.read(r, 'signature.sig') };
    case TPM_ALG.ECDSA:
    case TPM_ALG.ECDAA:
    case TPM_ALG.SM2:
    case TPM_ALG.ECSCHNORR:
      return {
        sigAlg,
        hash: readHashAlg(r, 'signature.hash'),
        signatureR: Tpm2bEccParameter.read(r, 'signature.signatureR'),
        signatureS: Tpm2bEccParameter.read(r, 'signature.signatureS'),
      };
    case TPM_ALG.HMAC:
      return { sigAlg, hmac: readTpmtHa(r, 'signature.hmac') };
    case TPM_ALG.NULL:
      return { sigAlg };
    default:
      return r.fail('sigAlg', `${algName(sigAlg)} is not a TPMI_ALG_SIG_SCHEME`);
  }
}

export function writeTpmtSignature(w: TpmWriter, s: TpmtSignature): void {
  w.u16(s.sigAlg);
  switch (s.sigAlg) {
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS:
      w.u16(s.hash);
      Tpm2bPublicKeyRsa.write(w, s.sig);
      return;
    case TPM_ALG.ECDSA:
    case TPM_ALG.ECDAA:
    case TPM_ALG.SM2:
    case TPM_ALG.ECSCHNORR:
      w.u16(s.hash);
      Tpm2bEccParameter.write(w, s.signatureR);
      Tpm2bEccParameter.write(w, s.signatureS);
      return;
    case TPM_ALG.HMAC:
      writeTpmtHa(w, s.hmac);
      return;
    case TPM_ALG.NULL:
      return;
  }
}

export function parseTpmtSignature(bytes: Uint8Array): TpmtSignature {
  return parseWhole(bytes, 'TPMT_SIGNATURE', readTpmtSignature);
}

export function marshalTpmtSignature(s: TpmtSignature): Buffer {
  const w = new TpmWriter(300);
  writeTpmtSignature(w, s);
  return w.finish();
}
