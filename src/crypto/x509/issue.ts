// Issuing X.509 certificates in the project's few profiles (docs/crypto.md "X.509
// profiles"). @peculiar/x509 assembles and signs the certificate; the profile decides
// every extension. The issuer's name is copied byte for byte from its certificate so
// chain building can match names exactly.
import 'reflect-metadata';
import * as px from '@peculiar/x509';
import { createHash, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { TrustlaunchError } from '../../protocol/errors.js';
import { readChildren, readWhole } from '../der.js';
import { parseCertificate, type Certificate } from './certificate.js';
import { TCG_OID, encodeTpmSan, type TpmAttributes } from './tcg.js';

export type CertificateProfile = 'server' | 'client' | 'ek' | 'intermediate-ca';

export interface CertificateIssuer {
  readonly certificate: Certificate;
  readonly privateKey: KeyObject;
}

export interface IssueCertificateOptions {
  readonly issuer: CertificateIssuer;
  readonly subjectPublicKey: KeyObject;
  readonly commonName: string;
  readonly profile: CertificateProfile;
  /** Server (at least one name required) and client SAN entries. */
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** Positive serial; 128 random bits by default. */
  readonly serial?: bigint;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** intermediate-ca only: the basicConstraints pathLenConstraint. */
  readonly pathLength?: number;
  /** ek only (required): TCG SAN attributes, e.g. { manufacturer: 'id:00001014', model: 'swtpm', version: 'id:20191023' }. */
  readonly tpm?: TpmAttributes;
}

export interface CreateSelfSignedCaOptions {
  readonly commonName: string;
  readonly privateKey: KeyObject;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly pathLength?: number;
}

const YEAR_MS = 365 * 24 * 3600 * 1000;
/** Back-dating absorbs small clock differences between the issuer and relying parties. */
const BACKDATE_MS = 5 * 60 * 1000;
/** RFC 5280 §4.1.2.5: 99991231235959Z means "no well-defined expiration" (an EK lives as long as its TPM). */
const NO_EXPIRY = new Date('9999-12-31T23:59:59Z');

const DEFAULT_LIFETIME_MS: Record<CertificateProfile | 'root-ca', number> = {
  'root-ca': 10 * YEAR_MS,
  'intermediate-ca': 5 * YEAR_MS,
  server: YEAR_MS,
  client: YEAR_MS,
  ek: Number.POSITIVE_INFINITY,
};

// --- signing key --------------------------------------------------------------------

interface SigningSetup {
  readonly importAlgorithm: webcrypto.AlgorithmIdentifier | webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  readonly signingAlgorithm: webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams;
}

/** The signature algorithm follows the key: ECDSA P-256/SHA-256, P-384/SHA-384, RSA PKCS#1 v1.5/SHA-256, Ed25519. */
function signingSetup(key: KeyObject): SigningSetup {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (curve === 'prime256v1') return { importAlgorithm: { name: 'ECDSA', namedCurve: 'P-256' }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } };
      if (curve === 'secp384r1') return { importAlgorithm: { name: 'ECDSA', namedCurve: 'P-384' }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } };
      break;
    case 'rsa':
      if ((key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) {
        return { importAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } };
      }
      break;
    case 'ed25519':
      return { importAlgorithm: { name: 'Ed25519' }, signingAlgorithm: { name: 'Ed25519' } };
    default:
      break;
  }
  throw new TrustlaunchError('MALFORMED_KEY', `an issuer key must be ECDSA P-256/P-384, RSA >= 2048 or Ed25519 (got ${key.asymmetricKeyType ?? 'unknown'} ${curve ?? ''})`.trim());
}

async function toCryptoKey(privateKey: KeyObject, setup: SigningSetup): Promise<webcrypto.CryptoKey> {
  if (privateKey.type !== 'private') throw new TypeError('the issuer key must be a private key');
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', pkcs8, setup.importAlgorithm, false, ['sign']);
}

// --- extensions ---------------------------------------------------------------------

function spkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value. */
export function keyIdentifier(publicKey: KeyObject): string {
  const [, bits] = readChildren(readWhole(spkiDer(publicKey), 'MALFORMED_KEY'), 'MALFORMED_KEY');
  if (bits === undefined) throw new TrustlaunchError('MALFORMED_KEY', 'malformed SubjectPublicKeyInfo');
  return createHash('sha1').update(bits.content.subarray(1)).digest('hex');
}

const KU = px.KeyUsageFlags;

function profileExtensions(opts: IssueCertificateOptions): px.Extension[] {
  const rsa = opts.subjectPublicKey.asymmetricKeyType === 'rsa';
  const sanNames: px.JsonGeneralName[] = [
    ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ipAddresses ?? []).map((value) => {
      if (isIP(value) === 0) throw new TypeError(`not an IP address: ${value}`);
      return { type: 'ip' as const, value };
    }),
  ];
  const san = sanNames.length > 0 ? [new px.SubjectAlternativeNameExtension(sanNames, false)] : [];
  switch (opts.profile) {
    case 'intermediate-ca':
      return caExtensions(opts.pathLength);
    case 'server':
      if (sanNames.length === 0) throw new TypeError('a server certificate needs at least one DNS name or IP address');
      return [
        new px.BasicConstraintsExtension(false, undefined, true),
        new px.KeyUsagesExtension(rsa ? KU.digitalSignature | KU.keyEncipherment : KU.digitalSignature, true),
        new px.ExtendedKeyUsageExtension([px.ExtendedKeyUsage.serverAuth], false),
        ...san,
      ];
    case 'client':
      return [
        new px.BasicConstraintsExtension(false, undefined, true),
        new px.KeyUsagesExtension(KU.digitalSignature, true),
        new px.ExtendedKeyUsageExtension([px.ExtendedKeyUsage.clientAuth], false),
        ...san,
      ];
    case 'ek':
      if (opts.tpm === undefined) throw new TypeError('an EK certificate needs the tpm attributes');
      // EK Credential Profile §3.2.7: an RSA EK decrypts (keyEncipherment), an ECC EK agrees keys (keyAgreement).
      return [
        new px.BasicConstraintsExtension(false, undefined, true),
        new px.KeyUsagesExtension(rsa ? KU.keyEncipherment : KU.keyAgreement, true),
        new px.ExtendedKeyUsageExtension([TCG_OID.ekCertificate], false),
        new px.Extension('2.5.29.17', true, encodeTpmSan(opts.tpm)),
      ];
  }
}

function caExtensions(pathLength: number | undefined): px.Extension[] {
  if (pathLength !== undefined && (!Number.isInteger(pathLength) || pathLength < 0 || pathLength > 8)) {
    throw new TypeError('pathLength must be an integer 0..8');
  }
  return [new px.BasicConstraintsExtension(true, pathLength, true), new px.KeyUsagesExtension(KU.keyCertSign | KU.cRLSign, true)];
}

// --- certificate --------------------------------------------------------------------

function serialHex(serial: bigint | undefined): string {
  if (serial === undefined) {
    const bytes = randomBytes(16);
    bytes[0] = ((bytes[0] as number) & 0x7f) | 0x01; // positive and 16 bytes long
    return bytes.toString('hex');
  }
  if (serial <= 0n || serial >= 1n << 159n) throw new TypeError('a serial is a positive integer of at most 20 bytes (RFC 5280 §4.1.2.2)');
  let hex = serial.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  return Number.parseInt(hex.slice(0, 2), 16) >= 0x80 ? `00${hex}` : hex;
}

function validity(kind: CertificateProfile | 'root-ca', notBefore: Date | undefined, notAfter: Date | undefined): { notBefore: Date; notAfter: Date } {
  const start = notBefore ?? new Date(Date.now() - BACKDATE_MS);
  const lifetime = DEFAULT_LIFETIME_MS[kind];
  const end = notAfter ?? (Number.isFinite(lifetime) ? new Date(start.getTime() + lifetime) : NO_EXPIRY);
  if (end.getTime() <= start.getTime()) throw new TypeError('notAfter must be later than notBefore');
  return { notBefore: start, notAfter: end };
}

function subjectName(commonName: string): px.Name {
  if (commonName.length === 0 || commonName.length > 64) throw new TypeError('commonName must be 1..64 characters (RFC 5280 ub-common-name)');
  return new px.Name([{ '2.5.4.3': [{ utf8String: commonName }] }]);
}

interface BuildOptions {
  readonly subject: px.Name;
  readonly issuerName: px.Name;
  readonly subjectPublicKey: KeyObject;
  readonly signingKey: KeyObject;
  readonly serial: bigint | undefined;
  readonly validity: { notBefore: Date; notAfter: Date };
  readonly extensions: px.Extension[];
}

async function build(opts: BuildOptions): Promise<Certificate> {
  const setup = signingSetup(opts.signingKey);
  const generated = await px.X509CertificateGenerator.create({
    serialNumber: serialHex(opts.serial),
    subject: opts.subject,
    issuer: opts.issuerName,
    notBefore: opts.validity.notBefore,
    notAfter: opts.validity.notAfter,
    publicKey: spkiDer(opts.subjectPublicKey),
    signingKey: await toCryptoKey(opts.signingKey, setup),
    signingAlgorithm: setup.signingAlgorithm,
    extensions: opts.extensions,
  });
  return parseCertificate(Buffer.from(generated.rawData));
}

/** A self-signed root CA certificate for `privateKey` (CA:TRUE, keyCertSign|cRLSign, SKI). */
export async function createSelfSignedCa(opts: CreateSelfSignedCaOptions): Promise<Certificate> {
  const publicKey = createPublicKey(opts.privateKey);
  const name = subjectName(opts.commonName);
  const keyId = keyIdentifier(publicKey);
  return build({
    subject: name,
    issuerName: name,
    subjectPublicKey: publicKey,
    signingKey: opts.privateKey,
    serial: undefined,
    validity: validity('root-ca', opts.notBefore, opts.notAfter),
    extensions: [...caExtensions(opts.pathLength), new px.SubjectKeyIdentifierExtension(keyId), new px.AuthorityKeyIdentifierExtension(keyId)],
  });
}

/** Issues a certificate in one of the project's profiles, signed by `issuer`. */
export async function issueCertificate(opts: IssueCertificateOptions): Promise<Certificate> {
  const { certificate: issuerCert, privateKey } = opts.issuer;
  if (issuerCert.basicConstraints?.ca !== true) throw new TypeError(`the issuer ${issuerCert.subject} is not a CA certificate`);
  if (!spkiDer(createPublicKey(privateKey)).equals(spkiDer(issuerCert.publicKey))) {
    throw new TypeError('the issuer private key does not belong to the issuer certificate');
  }
  if (opts.subjectPublicKey.type !== 'public') throw new TypeError('subjectPublicKey must be a public key');
  if (opts.pathLength !== undefined && opts.profile !== 'intermediate-ca') throw new TypeError('pathLength applies to intermediate-ca only');
  if (opts.tpm !== undefined && opts.profile !== 'ek') throw new TypeError('tpm attributes apply to the ek profile only');
  const authorityKeyId = issuerCert.subjectKeyId ?? keyIdentifier(issuerCert.publicKey);
  const issued = await build({
    subject: subjectName(opts.commonName),
    issuerName: new px.Name(issuerCert.subjectDer),
    subjectPublicKey: opts.subjectPublicKey,
    signingKey: privateKey,
    serial: opts.serial,
    validity: validity(opts.profile, opts.notBefore, opts.notAfter),
    extensions: [
      ...profileExtensions(opts),
      new px.SubjectKeyIdentifierExtension(keyIdentifier(opts.subjectPublicKey)),
      new px.AuthorityKeyIdentifierExtension(authorityKeyId),
    ],
  });
  if (!issued.issuerDer.equals(issuerCert.subjectDer)) {
    throw new TrustlaunchError('INTERNAL', 'the issued certificate does not carry its issuer name byte for byte');
  }
  return issued;
}
