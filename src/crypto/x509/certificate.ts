// An X.509 certificate (RFC 5280) as a small immutable snapshot: every field the project
// checks is read once, at parse time, from untrusted bytes. The outer structure
// (tbsCertificate, signatureAlgorithm, signatureValue) is split by our strict DER reader
// so the signature is later checked over exactly the bytes that were signed; the fields
// inside are decoded by @peculiar/x509.
import 'reflect-metadata';
import * as px from '@peculiar/x509';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { sha256Digest, type Digest } from '../../protocol/digest.js';
import { TrustlaunchError, isTrustlaunchError } from '../../protocol/errors.js';
import { TAG, decodeOid, readChildren, readWhole, type Tlv } from '../der.js';
import { canonicalName } from './name.js';
import { decodeTpmSan, type TpmAttributes } from './tcg.js';

/** Upper bounds for untrusted certificates (EK certificates are 0.8–1.5 KiB). */
export const MAX_CERTIFICATE_DER_BYTES = 16_384;
const MAX_PEM_CHARS = 32_768;
export const MAX_CERTIFICATES_PER_BUNDLE = 8;

export type KeyUsage =
  | 'digitalSignature'
  | 'nonRepudiation'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign'
  | 'encipherOnly'
  | 'decipherOnly';

/** RFC 5280 §4.2.1.3 bit order; @peculiar/x509 numbers bit n as 1 << n. */
export const KEY_USAGE_BITS: readonly KeyUsage[] = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
];

/** Signature algorithms we verify (RFC 4055, RFC 5758, RFC 8410); anything else is refused by verifyChain. */
export const SIGNATURE_ALGORITHMS = {
  '1.2.840.113549.1.1.11': { name: 'sha256WithRSAEncryption', key: 'rsa', hash: 'sha256' },
  '1.2.840.113549.1.1.12': { name: 'sha384WithRSAEncryption', key: 'rsa', hash: 'sha384' },
  '1.2.840.113549.1.1.13': { name: 'sha512WithRSAEncryption', key: 'rsa', hash: 'sha512' },
  '1.2.840.10045.4.3.2': { name: 'ecdsa-with-SHA256', key: 'ec', hash: 'sha256' },
  '1.2.840.10045.4.3.3': { name: 'ecdsa-with-SHA384', key: 'ec', hash: 'sha384' },
  '1.2.840.10045.4.3.4': { name: 'ecdsa-with-SHA512', key: 'ec', hash: 'sha512' },
  '1.3.101.112': { name: 'Ed25519', key: 'ed25519', hash: null },
} as const;
export type SignatureAlgorithmOid = keyof typeof SIGNATURE_ALGORITHMS;

export interface CertificateExtensionInfo {
  readonly oid: string;
  readonly critical: boolean;
}

/** The bytes a signature check needs, exactly as they appear in the certificate. */
export interface SignedPart {
  readonly tbs: Buffer;
  readonly algorithmOid: string;
  readonly signature: Buffer;
}

export class Certificate {
  /** Exact DER bytes. */
  readonly der: Buffer;
  readonly pem: string;
  /** `sha256:<hex>` of the DER: the identity used in logs and pins. */
  readonly sha256Fingerprint: Digest;
  /** Distinguished names as RFC 4514-style text, for people. */
  readonly subject: string;
  readonly issuer: string;
  /** Exact DER of the names. */
  readonly subjectDer: Buffer;
  readonly issuerDer: Buffer;
  /** Canonical names (RFC 5280 §7.1, OpenSSL's rules): chain building matches these. */
  readonly canonicalSubject: string;
  readonly canonicalIssuer: string;
  readonly commonName: string | undefined;
  /** Serial number as lowercase hex (as encoded, sign byte included). */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: KeyObject;
  /** Signature algorithm OID and, when we support it, its name. */
  readonly signatureAlgorithm: { readonly oid: string; readonly name: string | undefined };
  readonly basicConstraints: { readonly ca: boolean; readonly pathLength: number | undefined } | undefined;
  readonly keyUsage: readonly KeyUsage[] | undefined;
  /** Extended key usage OIDs. */
  readonly extendedKeyUsage: readonly string[] | undefined;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  /** TPM manufacturer/model/version from an EK certificate's SAN directoryName. */
  readonly tpm: TpmAttributes | undefined;
  readonly subjectKeyId: string | undefined;
  readonly authorityKeyId: string | undefined;
  readonly extensions: readonly CertificateExtensionInfo[];
  /** @internal The signed bytes, for verifyChain. */
  readonly signed: SignedPart;

  /** Use parseCertificate(); the constructor trusts that `der` was split by it. */
  constructor(der: Buffer, split: SplitCertificate) {
    const cert = new px.X509Certificate(der);
    this.der = der;
    this.pem = toPem(der);
    this.sha256Fingerprint = sha256Digest(der);
    this.subject = cert.subject;
    this.issuer = cert.issuer;
    this.subjectDer = split.subject.bytes;
    this.issuerDer = split.issuer.bytes;
    this.canonicalSubject = canonicalName(split.subject.bytes);
    this.canonicalIssuer = canonicalName(split.issuer.bytes);
    this.commonName = cert.subjectName.getField('CN')[0];
    this.serialNumber = split.serial.content.toString('hex');
    this.notBefore = cert.notBefore;
    this.notAfter = cert.notAfter;
    this.publicKey = createPublicKey({ key: split.spki.bytes, format: 'der', type: 'spki' });
    const oid = split.algorithmOid;
    this.signatureAlgorithm = { oid, name: isSupportedSignatureOid(oid) ? SIGNATURE_ALGORITHMS[oid].name : undefined };
    this.signed = { tbs: split.tbs.bytes, algorithmOid: oid, signature: split.signature };

    // Read once: @peculiar/x509 decodes the extensions afresh on every access. Array.from keeps the snapshot a plain array.
    const extensions = Array.from(cert.extensions);
    const find = <T extends px.Extension>(type: abstract new (...args: never[]) => T): T | undefined =>
      extensions.find((e): e is T => e instanceof type);
    this.extensions = extensions.map((e) => ({ oid: e.type, critical: e.critical }));
    const seen = new Set<string>();
    for (const { oid: extOid } of this.extensions) {
      // RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a particular extension."
      if (seen.has(extOid)) throw new TrustlaunchError('MALFORMED_CERTIFICATE', `extension ${extOid} appears twice`);
      seen.add(extOid);
    }
    const bc = find(px.BasicConstraintsExtension);
    this.basicConstraints = bc === undefined ? undefined : { ca: bc.ca, pathLength: bc.pathLength };
    const ku = find(px.KeyUsagesExtension);
    this.keyUsage = ku === undefined ? undefined : KEY_USAGE_BITS.filter((_, bit) => (ku.usages & (1 << bit)) !== 0);
    const eku = find(px.ExtendedKeyUsageExtension);
    this.extendedKeyUsage = eku === undefined ? undefined : Array.from(eku.usages, String);
    const san = find(px.SubjectAlternativeNameExtension);
    const names = san === undefined ? [] : Array.from(san.names.toJSON());
    this.dnsNames = names.filter((n) => n.type === 'dns').map((n) => n.value);
    this.ipAddresses = names.filter((n) => n.type === 'ip').map((n) => n.value);
    this.tpm = san === undefined ? undefined : decodeTpmSan(Buffer.from(san.value));
    this.subjectKeyId = find(px.SubjectKeyIdentifierExtension)?.keyId.toLowerCase();
    this.authorityKeyId = find(px.AuthorityKeyIdentifierExtension)?.keyId?.toLowerCase();
  }

  /** True when the certificate is valid at `now` (both bounds inclusive, RFC 5280 §4.1.2.5). */
  isValidAt(now: Date): boolean {
    return this.notBefore.getTime() <= now.getTime() && now.getTime() <= this.notAfter.getTime();
  }

  toString(): string {
    return `Certificate(${this.subject || '<empty subject>'}, issuer ${this.issuer}, serial ${this.serialNumber})`;
  }
}

export function isSupportedSignatureOid(oid: string): oid is SignatureAlgorithmOid {
  return Object.hasOwn(SIGNATURE_ALGORITHMS, oid);
}

export function toPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const lines = Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

// --- parsing -----------------------------------------------------------------------

interface SplitCertificate {
  readonly tbs: Tlv;
  readonly serial: Tlv;
  readonly issuer: Tlv;
  readonly subject: Tlv;
  readonly spki: Tlv;
  readonly algorithmOid: string;
  readonly signature: Buffer;
}

const CODE = 'MALFORMED_CERTIFICATE';

/** RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }. */
function splitCertificate(der: Buffer): SplitCertificate {
  const outer = readWhole(der, CODE);
  const parts = readChildren(outer, CODE);
  const [tbs, algorithm, signatureValue] = parts;
  if (outer.tag !== TAG.SEQUENCE || parts.length !== 3 || tbs?.tag !== TAG.SEQUENCE || algorithm?.tag !== TAG.SEQUENCE || signatureValue?.tag !== TAG.BIT_STRING) {
    throw new TrustlaunchError(CODE, 'not an X.509 certificate structure');
  }
  if (signatureValue.content[0] !== 0) throw new TrustlaunchError(CODE, 'the signature BIT STRING has unused bits');
  const fields = readChildren(tbs, CODE);
  // TBSCertificate: [0] version (absent for v1), serialNumber, signature, issuer, validity, subject, spki, ...
  const at = fields[0]?.tag === 0xa0 ? 1 : 0;
  const [serial, innerAlgorithm, issuer, validity, subject, spki] = fields.slice(at, at + 6);
  if (serial?.tag !== TAG.INTEGER || innerAlgorithm === undefined || issuer?.tag !== TAG.SEQUENCE || validity?.tag !== TAG.SEQUENCE || subject?.tag !== TAG.SEQUENCE || spki?.tag !== TAG.SEQUENCE) {
    throw new TrustlaunchError(CODE, 'malformed tbsCertificate');
  }
  // §4.1.1.2: the outer signatureAlgorithm MUST equal tbsCertificate.signature.
  if (!innerAlgorithm.bytes.equals(algorithm.bytes)) throw new TrustlaunchError(CODE, 'signatureAlgorithm differs from tbsCertificate.signature');
  const oid = readChildren(algorithm, CODE)[0];
  if (oid?.tag !== TAG.OID) throw new TrustlaunchError(CODE, 'malformed signature algorithm');
  return { tbs, serial, issuer, subject, spki, algorithmOid: decodeOid(oid.content, CODE), signature: signatureValue.content.subarray(1) };
}

function pemToDer(text: string): Buffer {
  if (text.length > MAX_PEM_CHARS) throw new TrustlaunchError(CODE, `PEM longer than ${MAX_PEM_CHARS} characters`);
  const m = /^\s*-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE-----\s*$/.exec(text);
  if (m === null) throw new TrustlaunchError(CODE, 'not exactly one PEM CERTIFICATE block');
  const body = (m[1] as string).replace(/\r?\n/g, '');
  const der = Buffer.from(body, 'base64');
  if (der.toString('base64') !== body) throw new TrustlaunchError(CODE, 'PEM body is not canonical base64');
  return der;
}

function toDer(input: string | Uint8Array): Buffer {
  if (typeof input === 'string') return pemToDer(input);
  const bytes = Buffer.from(input);
  const looksPem = bytes.subarray(0, 11).toString('latin1') === '-----BEGIN ';
  return looksPem ? pemToDer(bytes.subarray(0, MAX_PEM_CHARS + 1).toString('latin1')) : bytes;
}

/** Parses one certificate from PEM text or DER bytes; MALFORMED_CERTIFICATE on anything else. */
export function parseCertificate(pemOrDer: string | Uint8Array): Certificate {
  try {
    const der = toDer(pemOrDer);
    if (der.length > MAX_CERTIFICATE_DER_BYTES) throw new TrustlaunchError(CODE, `certificate larger than ${MAX_CERTIFICATE_DER_BYTES} bytes`);
    return new Certificate(der, splitCertificate(der));
  } catch (e) {
    if (isTrustlaunchError(e)) throw e;
    throw new TrustlaunchError(CODE, `cannot parse certificate: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** Parses a PEM bundle of one or more certificates (at most MAX_CERTIFICATES_PER_BUNDLE). */
export function parseCertificates(pem: string): Certificate[] {
  if (pem.length > MAX_PEM_CHARS * MAX_CERTIFICATES_PER_BUNDLE) throw new TrustlaunchError(CODE, 'PEM bundle too long');
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  const rest = pem.replace(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g, '');
  if (blocks.length === 0 || rest.trim() !== '') throw new TrustlaunchError(CODE, 'expected one or more PEM CERTIFICATE blocks and nothing else');
  if (blocks.length > MAX_CERTIFICATES_PER_BUNDLE) throw new TrustlaunchError(CODE, `more than ${MAX_CERTIFICATES_PER_BUNDLE} certificates`);
  return blocks.map((b) => parseCertificate(b));
}
