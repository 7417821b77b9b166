// Key templates: the TCG EK Credential Profile (v2.5 §2.1.5) default EK templates, and the
// AK templates tpm2-tools' tpm2_createak uses. A public area made from a template with
// the key's own unique field hashes to the same Name a real TPM computes for that key.
import type { EkAlgorithm } from './auth-device.js';
import { TPM_ALG, TPM_ECC_CURVE } from './constants.js';
import { objectAttributes } from './structures/object-attributes.js';
import type { TpmtPublic, TpmtPublicEcc, TpmtPublicRsa, TpmtScheme, TpmtSymDefObject } from './structures/public.js';

/** PolicyA_SHA256 = PolicySecret(TPM_RH_ENDORSEMENT) (EK Credential Profile §B.6.2). */
export const EK_POLICY_A_SHA256 = Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex');
/** PolicyB_SHA384 = PolicyOR of PolicySecret(TPM_RH_ENDORSEMENT) and the NV policy (§B.6.3), for the high-range templates. */
export const EK_POLICY_B_SHA384 = Buffer.from(
  'b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12',
  'hex',
);

const EK_ATTRIBUTES_LOW = objectAttributes('fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'adminWithPolicy', 'restricted', 'decrypt');
const EK_ATTRIBUTES_HIGH = objectAttributes('fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'userWithAuth', 'adminWithPolicy', 'restricted', 'decrypt');

/** What a template chooses; the rest of TPMT_PUBLIC (Part 2 §12.2.4) is the same for every key here. */
interface KeyChoices {
  readonly nameAlg: number;
  readonly objectAttributes: number;
  readonly authPolicy: Uint8Array;
  readonly symmetric: TpmtSymDefObject;
  readonly scheme: TpmtScheme;
  /** Zero bytes in `unique` (per coordinate for ECC): the profile's fill, or 0 for none. */
  readonly uniqueBytes: number;
}

/** An RSA key's TPMT_PUBLIC with the default exponent (TPMS_RSA_PARMS, Part 2 §12.2.3.5). */
function rsaTemplate(t: KeyChoices & { readonly keyBits: number }): TpmtPublicRsa {
  return {
    type: TPM_ALG.RSA,
    nameAlg: t.nameAlg,
    objectAttributes: t.objectAttributes,
    authPolicy: t.authPolicy,
    parameters: { symmetric: t.symmetric, scheme: t.scheme, keyBits: t.keyBits, exponent: 0 },
    unique: Buffer.alloc(t.uniqueBytes),
  };
}

/** An ECC key's TPMT_PUBLIC without a KDF (TPMS_ECC_PARMS, Part 2 §12.2.3.6). */
function eccTemplate(t: KeyChoices & { readonly curveID: number }): TpmtPublicEcc {
  return {
    type: TPM_ALG.ECC,
    nameAlg: t.nameAlg,
    objectAttributes: t.objectAttributes,
    authPolicy: t.authPolicy,
    parameters: { symmetric: t.symmetric, scheme: t.scheme, curveID: t.curveID, kdf: { scheme: TPM_ALG.NULL } },
    unique: { x: Buffer.alloc(t.uniqueBytes), y: Buffer.alloc(t.uniqueBytes) },
  };
}

/** Template L-1: RSA 2048 (AES-128-CFB), persistent handle 0x81010001 by convention. */
export const EK_TEMPLATE_RSA2048: TpmtPublicRsa = rsaTemplate({
  nameAlg: TPM_ALG.SHA256,
  objectAttributes: EK_ATTRIBUTES_LOW,
  authPolicy: EK_POLICY_A_SHA256,
  symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB },
  scheme: { scheme: TPM_ALG.NULL },
  keyBits: 2048,
  uniqueBytes: 256,
});

/** Template L-2: ECC NIST P-256 (AES-128-CFB). */
export const EK_TEMPLATE_ECC_P256: TpmtPublicEcc = eccTemplate({
  nameAlg: TPM_ALG.SHA256,
  objectAttributes: EK_ATTRIBUTES_LOW,
  authPolicy: EK_POLICY_A_SHA256,
  symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB },
  scheme: { scheme: TPM_ALG.NULL },
  curveID: TPM_ECC_CURVE.NIST_P256,
  uniqueBytes: 32,
});

/** Template H-3: ECC NIST P-384 (AES-256-CFB, SHA-384), what swtpm_setup creates. */
export const EK_TEMPLATE_ECC_P384: TpmtPublicEcc = eccTemplate({
  nameAlg: TPM_ALG.SHA384,
  objectAttributes: EK_ATTRIBUTES_HIGH,
  authPolicy: EK_POLICY_B_SHA384,
  symmetric: { algorithm: TPM_ALG.AES, keyBits: 256, mode: TPM_ALG.CFB },
  scheme: { scheme: TPM_ALG.NULL },
  curveID: TPM_ECC_CURVE.NIST_P384,
  uniqueBytes: 0,
});

export const EK_TEMPLATES: Readonly<Record<EkAlgorithm, TpmtPublic>> = {
  rsa2048: EK_TEMPLATE_RSA2048,
  'ecc-p256': EK_TEMPLATE_ECC_P256,
  'ecc-p384': EK_TEMPLATE_ECC_P384,
};

/** Persistent EK handles (TCG TPM v2.0 Provisioning Guidance §7.8). */
export const EK_HANDLE: Readonly<Record<EkAlgorithm, number>> = {
  rsa2048: 0x81010001,
  'ecc-p256': 0x81010002,
  'ecc-p384': 0x81010016,
};

/** AK attributes: restricted signing key that never leaves this TPM (tpm2_createak's choice). */
export const AK_ATTRIBUTES = objectAttributes('fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'userWithAuth', 'restricted', 'sign');

export type AkAlgorithm = 'ecc-p256' | 'rsa2048';

/** ECC P-256 AK with ECDSA-SHA256 (tpm2_createak -G ecc -g sha256 -s ecdsa). */
export const AK_TEMPLATE_ECC_P256: TpmtPublicEcc = eccTemplate({
  nameAlg: TPM_ALG.SHA256,
  objectAttributes: AK_ATTRIBUTES,
  authPolicy: Buffer.alloc(0),
  symmetric: { algorithm: TPM_ALG.NULL },
  scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
  curveID: TPM_ECC_CURVE.NIST_P256,
  uniqueBytes: 0,
});

/** RSA-2048 AK with RSASSA-SHA256 (tpm2_createak -G rsa -g sha256 -s rsassa). */
export const AK_TEMPLATE_RSA2048: TpmtPublicRsa = rsaTemplate({
  nameAlg: TPM_ALG.SHA256,
  objectAttributes: AK_ATTRIBUTES,
  authPolicy: Buffer.alloc(0),
  symmetric: { algorithm: TPM_ALG.NULL },
  scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
  keyBits: 2048,
  uniqueBytes: 0,
});

export const AK_TEMPLATES: Readonly<Record<AkAlgorithm, TpmtPublic>> = {
  'ecc-p256': AK_TEMPLATE_ECC_P256,
  rsa2048: AK_TEMPLATE_RSA2048,
};

/** Where the software TPM persists the AK made under each EK. */
export const AK_HANDLE: Readonly<Record<EkAlgorithm, number>> = {
  rsa2048: 0x81010101,
  'ecc-p256': 0x81010102,
  'ecc-p384': 0x81010116,
};
