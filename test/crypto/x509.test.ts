import 'reflect-metadata';
import * as px from '@peculiar/x509';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { generateKeyPairSync, webcrypto, type KeyObject } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  createSelfSignedCa,
  issueCertificate,
  parseCertificate,
  parseCertificates,
  verifyChain,
  type Certificate,
  type ChainFailureReason,
} from '../../src/crypto/x509.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { tempDir } from '../support/system.js';
import { manufactureSwtpmEkCertificates, opensslVerify, run, type SwtpmEkFiles } from './support.js';

const DAY = 24 * 3600 * 1000;
const TPM = { manufacturer: 'id:00001014', model: 'swtpm', version: 'id:20191023' } as const;

const p256 = (): { publicKey: KeyObject; privateKey: KeyObject } => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = (): { publicKey: KeyObject; privateKey: KeyObject } => generateKeyPairSync('ec', { namedCurve: 'P-384' });
const rsa2048 = (): { publicKey: KeyObject; privateKey: KeyObject } => generateKeyPairSync('rsa', { modulusLength: 2048 });
const ed25519 = (): { publicKey: KeyObject; privateKey: KeyObject } => generateKeyPairSync('ed25519');

function chainReason(e: unknown): ChainFailureReason | undefined {
  return isTrustlaunchError(e, 'CERT_CHAIN_INVALID') ? (e.detail?.['reason'] as ChainFailureReason) : undefined;
}

/** Builds certificates that issueCertificate refuses to make (non-CA issuers, odd extensions, SHA-1). */
async function forge(opts: {
  subject: string;
  issuer: string;
  subjectKey: KeyObject;
  signingKey: KeyObject;
  extensions?: px.Extension[];
  hash?: 'SHA-1' | 'SHA-256';
  notBefore?: Date;
  notAfter?: Date;
}): Promise<Certificate> {
  const rsa = opts.signingKey.asymmetricKeyType === 'rsa';
  const alg = rsa ? { name: 'RSASSA-PKCS1-v1_5', hash: opts.hash ?? 'SHA-256' } : { name: 'ECDSA', namedCurve: 'P-256', hash: opts.hash ?? 'SHA-256' };
  const signingKey = await webcrypto.subtle.importKey('pkcs8', opts.signingKey.export({ type: 'pkcs8', format: 'der' }), alg, false, ['sign']);
  const cert = await px.X509CertificateGenerator.create({
    serialNumber: '0badc0de',
    subject: opts.subject,
    issuer: opts.issuer,
    notBefore: opts.notBefore ?? new Date(Date.now() - DAY),
    notAfter: opts.notAfter ?? new Date(Date.now() + 30 * DAY),
    publicKey: opts.subjectKey.export({ type: 'spki', format: 'der' }),
    signingKey,
    signingAlgorithm: alg,
    extensions: opts.extensions ?? [],
  });
  return parseCertificate(Buffer.from(cert.rawData));
}

interface ChainCase {
  readonly name: string;
  readonly root: Certificate;
  readonly intermediates: readonly Certificate[];
  readonly leaf: Certificate;
  readonly at: Date;
  readonly expect: 'ok' | ChainFailureReason;
}

describe('X.509 issuance and parsing', () => {
  it('creates a self-signed CA with CA:TRUE, keyCertSign and a subject key identifier', async () => {
    const key = p256();
    const ca = await createSelfSignedCa({ commonName: 'trustlaunch test root', privateKey: key.privateKey, pathLength: 1 });
    assert.equal(ca.subject, 'CN=trustlaunch test root');
    assert.equal(ca.issuer, ca.subject);
    assert.deepEqual(ca.basicConstraints, { ca: true, pathLength: 1 });
    assert.deepEqual(ca.keyUsage, ['keyCertSign', 'cRLSign']);
    assert.ok(ca.publicKey.equals(key.publicKey));
    assert.equal(ca.subjectKeyId, ca.authorityKeyId);
    assert.match(ca.sha256Fingerprint, /^sha256:[0-9a-f]{64}$/);
    assert.equal(ca.signatureAlgorithm.name, 'ecdsa-with-SHA256');
    // openssl reads what we wrote
    const text = run('openssl', ['x509', '-noout', '-text'], { input: ca.pem }).stdout;
    assert.match(text, /CA:TRUE, pathlen:1/);
    assert.match(text, /Certificate Sign, CRL Sign/);
  });

  it('issues server, client, EK and intermediate certificates in their profiles', async () => {
    const rootKey = rsa2048();
    const root = await createSelfSignedCa({ commonName: 'root', privateKey: rootKey.privateKey });
    const issuer = { certificate: root, privateKey: rootKey.privateKey };

    const server = await issueCertificate({ issuer, subjectPublicKey: p256().publicKey, commonName: 'ca.local', profile: 'server', dnsNames: ['ca.local', 'localhost'], ipAddresses: ['127.0.0.1', '::1'] });
    assert.deepEqual(server.dnsNames, ['ca.local', 'localhost']);
    assert.deepEqual(server.ipAddresses, ['127.0.0.1', '::1']);
    assert.deepEqual(server.keyUsage, ['digitalSignature']);
    assert.deepEqual(server.extendedKeyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.deepEqual(server.basicConstraints, { ca: false, pathLength: undefined });
    assert.equal(server.authorityKeyId, root.subjectKeyId);
    assert.equal(server.signatureAlgorithm.name, 'sha256WithRSAEncryption');
    assert.ok(server.issuerDer.equals(root.subjectDer));

    const client = await issueCertificate({ issuer, subjectPublicKey: ed25519().publicKey, commonName: 'node-1', profile: 'client' });
    assert.deepEqual(client.extendedKeyUsage, ['1.3.6.1.5.5.7.3.2']);

    const rsaEk = await issueCertificate({ issuer, subjectPublicKey: rsa2048().publicKey, commonName: 'ek', profile: 'ek', tpm: TPM });
    assert.deepEqual(rsaEk.tpm, TPM);
    assert.deepEqual(rsaEk.keyUsage, ['keyEncipherment']);
    assert.deepEqual(rsaEk.extendedKeyUsage, ['2.23.133.8.1']);
    assert.deepEqual(rsaEk.extensions.find((e) => e.oid === '2.5.29.17'), { oid: '2.5.29.17', critical: true });
    assert.equal(rsaEk.notAfter.toISOString(), '9999-12-31T23:59:59.000Z');
    const eccEk = await issueCertificate({ issuer, subjectPublicKey: p384().publicKey, commonName: 'ek', profile: 'ek', tpm: TPM });
    assert.deepEqual(eccEk.keyUsage, ['keyAgreement']);
    // openssl decodes the TCG directoryName exactly as it decodes swtpm's
    const text = run('openssl', ['x509', '-noout', '-ext', 'subjectAltName'], { input: eccEk.pem }).stdout;
    assert.match(text, /critical\s+DirName:\/2\.23\.133\.2\.1=id:00001014\/2\.23\.133\.2\.2=swtpm\/2\.23\.133\.2\.3=id:20191023/);

    const inter = await issueCertificate({ issuer, subjectPublicKey: p384().publicKey, commonName: 'inter', profile: 'intermediate-ca', pathLength: 0 });
    assert.deepEqual(inter.basicConstraints, { ca: true, pathLength: 0 });
  });

  it('honours explicit serials and validity, and refuses bad options as TypeError', async () => {
    const key = p256();
    const root = await createSelfSignedCa({ commonName: 'root', privateKey: key.privateKey });
    const issuer = { certificate: root, privateKey: key.privateKey };
    const notBefore = new Date('2030-01-01T00:00:00Z');
    const notAfter = new Date('2031-01-01T00:00:00Z');
    const c = await issueCertificate({ issuer, subjectPublicKey: p256().publicKey, commonName: 'x', profile: 'client', serial: 0x80n, notBefore, notAfter });
    assert.equal(c.serialNumber, '0080');
    assert.deepEqual([c.notBefore, c.notAfter], [notBefore, notAfter]);
    const other = p256();
    await assert.rejects(issueCertificate({ issuer: { certificate: root, privateKey: other.privateKey }, subjectPublicKey: p256().publicKey, commonName: 'x', profile: 'client' }), TypeError);
    await assert.rejects(issueCertificate({ issuer, subjectPublicKey: p256().publicKey, commonName: 'x', profile: 'server' }), TypeError);
    await assert.rejects(issueCertificate({ issuer, subjectPublicKey: p256().publicKey, commonName: 'x', profile: 'ek' }), TypeError);
    await assert.rejects(issueCertificate({ issuer: { certificate: c, privateKey: key.privateKey }, subjectPublicKey: p256().publicKey, commonName: 'x', profile: 'client' }), TypeError);
    await assert.rejects(issueCertificate({ issuer, subjectPublicKey: p256().publicKey, commonName: 'x', profile: 'client', serial: 0n }), TypeError);
  });

  it('parses PEM and DER to the same certificate, and PEM bundles', async () => {
    const key = p256();
    const ca = await createSelfSignedCa({ commonName: 'root', privateKey: key.privateKey });
    assert.ok(parseCertificate(ca.pem).der.equals(ca.der));
    assert.ok(parseCertificate(ca.der).der.equals(ca.der));
    assert.ok(parseCertificate(Buffer.from(ca.pem)).der.equals(ca.der));
    assert.equal(parseCertificates(ca.pem + ca.pem).length, 2);
    assert.throws(() => parseCertificate(ca.pem + ca.pem), (e) => isTrustlaunchError(e, 'MALFORMED_CERTIFICATE'));
    assert.throws(() => parseCertificates(`${ca.pem}junk`), (e) => isTrustlaunchError(e, 'MALFORMED_CERTIFICATE'));
  });

  it('rejects garbage, truncation and trailing bytes with MALFORMED_CERTIFICATE only', async () => {
    const key = p256();
    const ca = await createSelfSignedCa({ commonName: 'root', privateKey: key.privateKey });
    const malformed = (input: string | Uint8Array): boolean => {
      try {
        parseCertificate(input);
        return false;
      } catch (e) {
        return isTrustlaunchError(e, 'MALFORMED_CERTIFICATE');
      }
    };
    for (let n = 0; n < ca.der.length; n++) assert.ok(malformed(ca.der.subarray(0, n)), `truncated to ${n}`);
    assert.ok(malformed(Buffer.concat([ca.der, Buffer.from([0])])));
    assert.ok(malformed(Buffer.alloc(20_000, 0x30)));
    assert.ok(malformed('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => malformed(bytes)), { numRuns: 500 });
    // a certificate body with random bytes inside a valid outer SEQUENCE
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (bytes) => malformed(Buffer.concat([Buffer.from([0x30, 0x82, bytes.length >> 8, bytes.length & 0xff]), bytes]))),
      { numRuns: 300 },
    );
  });
});

describe('X.509 chain verification (openssl verify as the oracle)', () => {
  const dir = tempDir('tl-x509-');
  const cases: ChainCase[] = [];

  before(async () => {
    const now = new Date();
    const rsaRootKey = rsa2048();
    const rsaRoot = await createSelfSignedCa({ commonName: 'RSA root', privateKey: rsaRootKey.privateKey });
    const p256RootKey = p256();
    const p256Root = await createSelfSignedCa({ commonName: 'P-256 root', privateKey: p256RootKey.privateKey });
    const p384RootKey = p384();
    const p384Root = await createSelfSignedCa({ commonName: 'P-384 root', privateKey: p384RootKey.privateKey });
    const edRootKey = ed25519();
    const edRoot = await createSelfSignedCa({ commonName: 'Ed25519 root', privateKey: edRootKey.privateKey });
    const interKey = p384();
    const inter = await issueCertificate({ issuer: { certificate: rsaRoot, privateKey: rsaRootKey.privateKey }, subjectPublicKey: interKey.publicKey, commonName: 'EK intermediate', profile: 'intermediate-ca' });
    const byP256 = { certificate: p256Root, privateKey: p256RootKey.privateKey };
    const leafKey = p256();
    const server = await issueCertificate({ issuer: byP256, subjectPublicKey: leafKey.publicKey, commonName: 'localhost', profile: 'server', dnsNames: ['localhost'] });
    const rsaEk = await issueCertificate({ issuer: { certificate: inter, privateKey: interKey.privateKey }, subjectPublicKey: rsa2048().publicKey, commonName: 'ek', profile: 'ek', tpm: TPM });
    const eccEk = await issueCertificate({ issuer: { certificate: inter, privateKey: interKey.privateKey }, subjectPublicKey: p384().publicKey, commonName: 'ek', profile: 'ek', tpm: TPM });
    const p384Client = await issueCertificate({ issuer: { certificate: p384Root, privateKey: p384RootKey.privateKey }, subjectPublicKey: ed25519().publicKey, commonName: 'c', profile: 'client' });
    const edServer = await issueCertificate({ issuer: { certificate: edRoot, privateKey: edRootKey.privateKey }, subjectPublicKey: p256().publicKey, commonName: 's', profile: 'server', ipAddresses: ['127.0.0.1'] });

    cases.push({ name: 'P-256 root → server', root: p256Root, intermediates: [], leaf: server, at: now, expect: 'ok' });
    cases.push({ name: 'RSA root → P-384 intermediate → RSA EK', root: rsaRoot, intermediates: [inter], leaf: rsaEk, at: now, expect: 'ok' });
    cases.push({ name: 'RSA root → P-384 intermediate → P-384 EK', root: rsaRoot, intermediates: [inter], leaf: eccEk, at: now, expect: 'ok' });
    cases.push({ name: 'P-384 root → client', root: p384Root, intermediates: [], leaf: p384Client, at: now, expect: 'ok' });
    cases.push({ name: 'Ed25519 root → server', root: edRoot, intermediates: [], leaf: edServer, at: now, expect: 'ok' });
    cases.push({ name: 'leaf after notAfter', root: p256Root, intermediates: [], leaf: server, at: new Date(server.notAfter.getTime() + 1000), expect: 'expired' });
    cases.push({ name: 'leaf before notBefore', root: p256Root, intermediates: [], leaf: server, at: new Date(server.notBefore.getTime() - 1000), expect: 'not-yet-valid' });
    cases.push({ name: 'missing intermediate', root: rsaRoot, intermediates: [], leaf: rsaEk, at: now, expect: 'unknown-issuer' });
    cases.push({ name: 'another root', root: p384Root, intermediates: [], leaf: server, at: now, expect: 'unknown-issuer' });

    const shortInter = await issueCertificate({
      issuer: { certificate: rsaRoot, privateKey: rsaRootKey.privateKey },
      subjectPublicKey: interKey.publicKey,
      commonName: 'short intermediate',
      profile: 'intermediate-ca',
      notBefore: new Date(now.getTime() - 2 * DAY),
      notAfter: new Date(now.getTime() - DAY),
    });
    const underShort = await issueCertificate({ issuer: { certificate: shortInter, privateKey: interKey.privateKey }, subjectPublicKey: p256().publicKey, commonName: 'x', profile: 'client', notBefore: new Date(now.getTime() - 2 * DAY) });
    cases.push({ name: 'expired intermediate', root: rsaRoot, intermediates: [shortInter], leaf: underShort, at: now, expect: 'expired' });

    // an impostor root: same name, other key
    const impostorKey = p256();
    const impostor = await forge({ subject: 'CN=P-256 root', issuer: 'CN=P-256 root', subjectKey: impostorKey.publicKey, signingKey: impostorKey.privateKey, extensions: [new px.BasicConstraintsExtension(true, undefined, true)] });
    cases.push({ name: 'same-name root with another key', root: impostor, intermediates: [], leaf: server, at: now, expect: 'bad-signature' });

    const tampered = Buffer.from(server.der);
    tampered[tampered.length - 10] = (tampered[tampered.length - 10] as number) ^ 0x01;
    cases.push({ name: 'one signature byte changed', root: p256Root, intermediates: [], leaf: parseCertificate(tampered), at: now, expect: 'bad-signature' });

    // a non-CA certificate used as an issuer
    const underLeaf = await forge({ subject: 'CN=victim', issuer: 'CN=localhost', subjectKey: p256().publicKey, signingKey: leafKey.privateKey });
    cases.push({ name: 'issuer is not a CA', root: p256Root, intermediates: [server], leaf: underLeaf, at: now, expect: 'not-a-ca' });

    // a CA certificate without keyCertSign
    const noSignKey = p256();
    const noCertSign = await forge({
      subject: 'CN=no certsign',
      issuer: 'CN=P-256 root',
      subjectKey: noSignKey.publicKey,
      signingKey: p256RootKey.privateKey,
      extensions: [new px.BasicConstraintsExtension(true, undefined, true), new px.KeyUsagesExtension(px.KeyUsageFlags.digitalSignature, true)],
    });
    const underNoCertSign = await forge({ subject: 'CN=x', issuer: 'CN=no certsign', subjectKey: p256().publicKey, signingKey: noSignKey.privateKey });
    cases.push({ name: 'issuer lacks keyCertSign', root: p256Root, intermediates: [noCertSign], leaf: underNoCertSign, at: now, expect: 'key-usage' });

    // pathLenConstraint 0 followed by another intermediate
    const pl0Key = p256();
    const pl0 = await issueCertificate({ issuer: byP256, subjectPublicKey: pl0Key.publicKey, commonName: 'pathlen 0', profile: 'intermediate-ca', pathLength: 0 });
    const subKey = p256();
    const sub = await issueCertificate({ issuer: { certificate: pl0, privateKey: pl0Key.privateKey }, subjectPublicKey: subKey.publicKey, commonName: 'sub', profile: 'intermediate-ca' });
    const deep = await issueCertificate({ issuer: { certificate: sub, privateKey: subKey.privateKey }, subjectPublicKey: p256().publicKey, commonName: 'deep', profile: 'client' });
    cases.push({ name: 'path length exceeded', root: p256Root, intermediates: [pl0, sub], leaf: deep, at: now, expect: 'path-length' });
    const shallow = await issueCertificate({ issuer: { certificate: pl0, privateKey: pl0Key.privateKey }, subjectPublicKey: p256().publicKey, commonName: 'shallow', profile: 'client' });
    cases.push({ name: 'path length respected', root: p256Root, intermediates: [pl0], leaf: shallow, at: now, expect: 'ok' });

    // an unknown critical extension
    const unknownCritical = await forge({ subject: 'CN=odd', issuer: 'CN=P-256 root', subjectKey: p256().publicKey, signingKey: p256RootKey.privateKey, extensions: [new px.Extension('1.3.6.1.4.1.99999.1', true, Buffer.from([0x05, 0x00]))] });
    cases.push({ name: 'unknown critical extension', root: p256Root, intermediates: [], leaf: unknownCritical, at: now, expect: 'unsupported-critical-extension' });

    // SHA-1 signature
    const sha1 = await forge({ subject: 'CN=old', issuer: 'CN=RSA root', subjectKey: p256().publicKey, signingKey: rsaRootKey.privateKey, hash: 'SHA-1' });
    cases.push({ name: 'SHA-1 signature', root: rsaRoot, intermediates: [], leaf: sha1, at: now, expect: 'unsupported-algorithm' });

    // the issuer name in another string type (PrintableString), case and spacing: the same name (RFC 5280 §7.1)
    const respelled = await forge({ subject: 'CN=respelled', issuer: 'CN=p-256   ROOT', subjectKey: p256().publicKey, signingKey: p256RootKey.privateKey });
    cases.push({ name: 'issuer name spelled differently', root: p256Root, intermediates: [], leaf: respelled, at: now, expect: 'ok' });

    // an RSA-1024 root
    const weakKey = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weakRoot = await forge({ subject: 'CN=weak', issuer: 'CN=weak', subjectKey: weakKey.publicKey, signingKey: weakKey.privateKey, extensions: [new px.BasicConstraintsExtension(true, undefined, true)] });
    const underWeak = await forge({ subject: 'CN=x', issuer: 'CN=weak', subjectKey: p256().publicKey, signingKey: weakKey.privateKey });
    cases.push({ name: 'RSA-1024 issuer', root: weakRoot, intermediates: [], leaf: underWeak, at: now, expect: 'weak-key' });

    // two CAs that certify each other, no path to the root
    const aKey = p256();
    const bKey = p256();
    const ext = [new px.BasicConstraintsExtension(true, undefined, true)];
    const a = await forge({ subject: 'CN=A', issuer: 'CN=B', subjectKey: aKey.publicKey, signingKey: bKey.privateKey, extensions: ext });
    const b = await forge({ subject: 'CN=B', issuer: 'CN=A', subjectKey: bKey.publicKey, signingKey: aKey.privateKey, extensions: ext });
    const looped = await forge({ subject: 'CN=looped', issuer: 'CN=A', subjectKey: p256().publicKey, signingKey: aKey.privateKey });
    cases.push({ name: 'issuer loop', root: p256Root, intermediates: [a, b], leaf: looped, at: now, expect: 'loop' });
  });
  after(() => dir.dispose());

  it('agrees with openssl verify on every valid and invalid chain, and names the reason', async () => {
    assert.ok(cases.length >= 18);
    for (const c of cases) {
      const oracle = opensslVerify(dir.path, { root: c.root.pem, intermediates: c.intermediates.map((i) => i.pem), leaf: c.leaf.pem }, c.at);
      let ours: 'ok' | ChainFailureReason | undefined;
      let path: Certificate[] = [];
      try {
        path = await verifyChain(c.leaf, { intermediates: c.intermediates, roots: [c.root], now: c.at });
        ours = 'ok';
      } catch (e) {
        ours = chainReason(e);
        assert.ok(ours !== undefined, `${c.name}: unexpected error ${String(e)}`);
      }
      assert.equal(ours, c.expect, `${c.name}: reason`);
      assert.equal(oracle.status === 0, ours === 'ok', `${c.name}: openssl says ${oracle.stdout}${oracle.stderr}`);
      if (ours === 'ok') {
        assert.ok(path[0]?.der.equals(c.leaf.der) && path[path.length - 1]?.der.equals(c.root.der), `${c.name}: path leaf..root`);
      }
    }
  });

  it('accepts a root presented as the leaf, and rejects every one-byte change of a leaf', async () => {
    const key = p256();
    const root = await createSelfSignedCa({ commonName: 'root', privateKey: key.privateKey });
    assert.deepEqual((await verifyChain(root, { roots: [root] })).map((c) => c.sha256Fingerprint), [root.sha256Fingerprint]);
    const leaf = await issueCertificate({ issuer: { certificate: root, privateKey: key.privateKey }, subjectPublicKey: p256().publicKey, commonName: 'leaf', profile: 'client' });
    for (let i = 0; i < leaf.der.length; i++) {
      const bytes = Buffer.from(leaf.der);
      bytes[i] = (bytes[i] as number) ^ 0x04;
      let accepted = false;
      try {
        await verifyChain(parseCertificate(bytes), { roots: [root] });
        accepted = true;
      } catch (e) {
        assert.ok(isTrustlaunchError(e, 'MALFORMED_CERTIFICATE') || isTrustlaunchError(e, 'CERT_CHAIN_INVALID'), `byte ${i}: ${String(e)}`);
      }
      assert.equal(accepted, false, `byte ${i} changed and the chain still verified`);
    }
  });
});

describe('X.509 with real swtpm EK certificates', () => {
  const dir = tempDir('tl-swtpm-ek-');
  let ek: SwtpmEkFiles;
  before(() => {
    ek = manufactureSwtpmEkCertificates(dir.path);
  });
  after(() => dir.dispose());

  it('parses the RSA-2048 and ECC P-384 EK certificates with their TCG attributes', () => {
    const rsa = parseCertificate(ek.rsaEkDer);
    const ecc = parseCertificate(ek.eccEkDer);
    assert.equal(rsa.publicKey.asymmetricKeyType, 'rsa');
    assert.equal(rsa.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.equal(ecc.publicKey.asymmetricKeyType, 'ec');
    assert.equal(ecc.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
    for (const c of [rsa, ecc]) {
      assert.deepEqual(c.tpm, { manufacturer: 'id:00001014', model: 'swtpm', version: 'id:20191023' });
      assert.deepEqual(c.extendedKeyUsage, ['2.23.133.8.1']);
      assert.deepEqual(c.extensions.find((e) => e.oid === '2.5.29.17'), { oid: '2.5.29.17', critical: true });
      assert.equal(c.issuer, 'CN=swtpm-localca');
    }
    assert.deepEqual(rsa.keyUsage, ['keyEncipherment']);
    assert.deepEqual(ecc.keyUsage, ['keyAgreement']);
  });

  it('verifies both EK certificates to the swtpm local root, as openssl does', async () => {
    const root = parseCertificate(ek.rootCaPem);
    const issuer = parseCertificate(ek.issuerCaPem);
    for (const der of [ek.rsaEkDer, ek.eccEkDer]) {
      const leaf = parseCertificate(der);
      const path = await verifyChain(leaf, { intermediates: [issuer], roots: [root] });
      assert.deepEqual(path.map((c) => c.subject), ['CN=unknown', 'CN=swtpm-localca', 'CN=swtpm-localca-rootca']);
      assert.equal(opensslVerify(dir.path, { root: ek.rootCaPem, intermediates: [ek.issuerCaPem], leaf: leaf.pem }, new Date()).status, 0);
    }
  });

  it('refuses the EK certificates without the issuer, under another root, or before they were issued', async () => {
    const root = parseCertificate(ek.rootCaPem);
    const issuer = parseCertificate(ek.issuerCaPem);
    const leaf = parseCertificate(ek.eccEkDer);
    const otherKey = p256();
    const other = await createSelfSignedCa({ commonName: 'swtpm-localca-rootca', privateKey: otherKey.privateKey });
    const attempts: Array<[() => Promise<unknown>, ChainFailureReason]> = [
      [() => verifyChain(leaf, { roots: [root] }), 'unknown-issuer'],
      [() => verifyChain(leaf, { intermediates: [issuer], roots: [other] }), 'bad-signature'],
      [() => verifyChain(leaf, { intermediates: [issuer], roots: [root], now: new Date(leaf.notBefore.getTime() - DAY) }), 'not-yet-valid'],
    ];
    for (const [attempt, reason] of attempts) {
      await assert.rejects(attempt(), (e) => chainReason(e) === reason);
    }
  });
});
