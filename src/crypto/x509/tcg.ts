// TCG EK Credential Profile for TPM Family 2.0 (v2.5) pieces of an EK certificate:
// the TPM manufacturer, model and version carried as a directoryName in the Subject
// Alternative Name (§3.2.9; critical when the subject is empty) and the EK certificate
// extended key usage (§3.2.16).
import { TrustlaunchError } from '../../protocol/errors.js';
import { TAG, decodeOid, derOid, derUtf8, readChildren, readWhole, tlv } from '../der.js';

export const TCG_OID = {
  /** tcg-at-tpmManufacturer: "id:" and the TCG vendor id as 8 hex digits, e.g. id:00001014 (IBM). */
  tpmManufacturer: '2.23.133.2.1',
  /** tcg-at-tpmModel. */
  tpmModel: '2.23.133.2.2',
  /** tcg-at-tpmVersion: "id:" and the firmware version as 8 hex digits. */
  tpmVersion: '2.23.133.2.3',
  /** tcg-kp-EKCertificate: the extended key usage of an EK certificate. */
  ekCertificate: '2.23.133.8.1',
} as const;

/** What an EK certificate says about its TPM. */
export interface TpmAttributes {
  readonly manufacturer: string;
  readonly model: string;
  readonly version: string;
}

const CONTEXT_DIRECTORY_NAME = 0xa4; // GeneralName [4] Name (explicit: Name is a CHOICE)
const STRING_TAGS = new Set([TAG.UTF8_STRING, 0x13 /* PrintableString */, 0x16 /* IA5String */]);

/** GeneralNames DER (the SAN extension value) holding one directoryName with the TPM attributes. */
export function encodeTpmSan(tpm: TpmAttributes): Buffer {
  const rdn = (oid: string, value: string): Buffer => tlv(TAG.SET, tlv(TAG.SEQUENCE, derOid(oid), derUtf8(value)));
  const name = tlv(
    TAG.SEQUENCE,
    rdn(TCG_OID.tpmManufacturer, tpm.manufacturer),
    rdn(TCG_OID.tpmModel, tpm.model),
    rdn(TCG_OID.tpmVersion, tpm.version),
  );
  return tlv(TAG.SEQUENCE, tlv(CONTEXT_DIRECTORY_NAME, name));
}

/**
 * The TPM attributes from a SAN extension value (GeneralNames DER), or undefined when no
 * directoryName carries all three. Attributes may share one RDN or sit in one RDN each.
 */
export function decodeTpmSan(generalNames: Buffer): TpmAttributes | undefined {
  const code = 'MALFORMED_CERTIFICATE';
  const found = new Map<string, string>();
  for (const generalName of readChildren(readWhole(generalNames, code), code)) {
    if (generalName.tag !== CONTEXT_DIRECTORY_NAME) continue;
    const name = readWhole(generalName.content, code);
    for (const set of readChildren(name, code)) {
      for (const attribute of readChildren(set, code)) {
        const [type, value] = readChildren(attribute, code);
        if (type?.tag !== TAG.OID || value === undefined || !STRING_TAGS.has(value.tag)) continue;
        const oid = decodeOid(type.content, code);
        if (found.has(oid)) throw new TrustlaunchError(code, `the SAN repeats TPM attribute ${oid}`);
        found.set(oid, value.content.toString('utf8'));
      }
    }
  }
  const manufacturer = found.get(TCG_OID.tpmManufacturer);
  const model = found.get(TCG_OID.tpmModel);
  const version = found.get(TCG_OID.tpmVersion);
  if (manufacturer === undefined || model === undefined || version === undefined) return undefined;
  return { manufacturer, model, version };
}
