// The client's verification pipeline (src/client/verify.ts): every check refuses with its
// own code and names itself; the checks run in order (the signature before any claim);
// and attacker bytes only ever produce TrustlaunchErrors. Receipts and host certificates
// are made with a real CA directory's keys (ca init) through the CA's own issuing code.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { initCaDirectory, loadCaDirectory, type CaMaterial } from '../../src/ca/directory.js';
import { parseIdentity, type PinnedCa } from '../../src/ca/identity.js';
import { parseReceiptInput } from '../../src/client/offline.js';
import { verifyLaunch, type LaunchExpectations } from '../../src/client/verify.js';
import { sshFingerprint } from '../../src/crypto/fingerprints.js';
import { generateKeyPair } from '../../src/crypto/keys.js';
import { issueReceipt } from '../../src/crypto/receipts.js';
import { issueHostCertificate } from '../../src/crypto/ssh-certificates.js';
import { formatSshPublicKey } from '../../src/crypto/ssh-keys.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError, TrustlaunchError } from '../../src/protocol/errors.js';
import { RECEIPT_PROFILE, type ReceiptClaims } from '../../src/protocol/messages.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { tempDir } from '../support/system.js';

const VM = 'vm-abcdefghijklmnop';
const KERNEL = sha256Digest('kernel');

describe('client verification pipeline', () => {
  const tmp = tempDir('tl-client-verify-');
  let m: CaMaterial;
  let ca: PinnedCa;
  const hostKey = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
  const userKey = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
  const nonce = newNonce();

  before(async () => {
    await initCaDirectory(tmp.path);
    m = await loadCaDirectory(tmp.path);
    ca = parseIdentity(m.identity, m.fingerprint);
  });
  after(() => tmp.dispose());

  const claims = (over: Partial<ReceiptClaims> = {}): ReceiptClaims => {
    const now = Math.floor(Date.now() / 1000);
    return {
      iss: m.config.issuer,
      iat: now,
      exp: now + 3600,
      jti: 'jti-1',
      eat_profile: RECEIPT_PROFILE,
      eat_nonce: nonce,
      'ear.status': 'affirming',
      sub: VM,
      node: 'node-1',
      hostname: VM,
      kernel: KERNEL,
      ssh_host_key: hostKey,
      ssh_host_key_fp: sshFingerprint(hostKey),
      authorized_key_fp: sshFingerprint(userKey),
      allowlist: 'guest',
      ...over,
    };
  };
  const sign = (c: ReceiptClaims, key = m.receiptKey): Promise<string> => issueReceipt(c, { privateKey: key, alg: m.receiptAlgorithm, kid: m.receiptKeyId });
  const certify = (o: { key?: string; principal?: string; caKey?: typeof m.sshCaKey } = {}): string =>
    issueHostCertificate({
      caPrivateKey: o.caKey ?? m.sshCaKey,
      hostKey: o.key ?? hostKey,
      principals: [o.principal ?? VM],
      keyId: 'test',
      validAfter: new Date(Date.now() - 60_000),
      validBefore: new Date(Date.now() + 3600_000),
    });
  const expect: LaunchExpectations = { nonce, vmId: VM, kernel: KERNEL, authorizedKey: userKey, requireHostCertificate: true };

  const refused = async (p: Promise<unknown>, code: string, check: string): Promise<TrustlaunchError> => {
    let caught: unknown;
    await assert.rejects(p, (e) => ((caught = e), true));
    assert.ok(isTrustlaunchError(caught), String(caught));
    assert.equal(caught.code, code, caught.message);
    assert.equal(caught.detail?.['check'], check, caught.message);
    assert.ok(caught.message.length > 10);
    return caught;
  };

  it('passes a genuine launch through every check, in order', async () => {
    const v = await verifyLaunch(ca, { receipt: await sign(claims()), hostCertificate: certify() }, expect);
    assert.deepEqual([...v.passed], ['signature', 'nonce', 'status', 'vm', 'kernel', 'hostKey', 'hostCertificate', 'authorizedKey']);
    assert.deepEqual([...v.notes], []);
    assert.equal(v.hostKey, hostKey);
    assert.equal(v.hostKeyFingerprint, sshFingerprint(hostKey));
  });

  it('signature: another key, or a receipt that is not one', async () => {
    const other = generateKeyPair(m.receiptAlgorithm === 'ES256' ? 'ecdsa-p256' : 'ed25519').privateKey;
    await refused(verifyLaunch(ca, { receipt: await sign(claims(), other), hostCertificate: certify() }, expect), 'RECEIPT_SIGNATURE_INVALID', 'signature');
    await refused(verifyLaunch(ca, { receipt: 'not.a.receipt', hostCertificate: certify() }, expect), 'RECEIPT_MALFORMED', 'signature');
    // issued by another CA name, with this CA's key
    await refused(verifyLaunch(ca, { receipt: await sign(claims({ iss: 'someone-else' })), hostCertificate: certify() }, expect), 'RECEIPT_ISSUER_MISMATCH', 'signature');
  });

  it('nonce: a receipt for another nonce', async () => {
    await refused(verifyLaunch(ca, { receipt: await sign(claims({ eat_nonce: newNonce() })), hostCertificate: certify() }, expect), 'NONCE_MISMATCH', 'nonce');
  });

  it('status: contraindicated (with the CA\'s reason) and warning are refused', async () => {
    const no = claims({ 'ear.status': 'contraindicated', reason: { step: 'kernel', code: 'KERNEL_NOT_ALLOWED', message: 'not on the allowlist' } });
    const e = await refused(verifyLaunch(ca, { receipt: await sign(no), hostCertificate: undefined }, expect), 'RECEIPT_CONTRAINDICATED', 'status');
    assert.deepEqual(e.detail?.['reason'], { step: 'kernel', code: 'KERNEL_NOT_ALLOWED', message: 'not on the allowlist' });
    assert.match(e.message, /KERNEL_NOT_ALLOWED/);
    await refused(verifyLaunch(ca, { receipt: await sign(claims({ 'ear.status': 'warning' })), hostCertificate: certify() }, expect), 'RECEIPT_CONTRAINDICATED', 'status');
  });

  it('vm: another VM id, or another host name', async () => {
    await refused(verifyLaunch(ca, { receipt: await sign(claims({ sub: 'vm-zzzzzzzzzzzzzzzz' })), hostCertificate: certify() }, expect), 'VM_MISMATCH', 'vm');
    await refused(verifyLaunch(ca, { receipt: await sign(claims({ hostname: 'elsewhere' })), hostCertificate: certify() }, expect), 'VM_MISMATCH', 'vm');
  });

  it('kernel: another kernel than expected; without an expectation it is a note', async () => {
    const e = await refused(verifyLaunch(ca, { receipt: await sign(claims({ kernel: sha256Digest('other') })), hostCertificate: certify() }, expect), 'KERNEL_MISMATCH', 'kernel');
    assert.equal(e.detail?.['expected'], KERNEL);
    const { kernel: _k, ...noKernel } = expect;
    const v = await verifyLaunch(ca, { receipt: await sign(claims({ kernel: sha256Digest('other') })), hostCertificate: certify() }, noKernel);
    assert.ok(!v.passed.includes('kernel'));
    assert.match(v.notes.join('\n'), /kernel: not compared/);
  });

  it('hostKey: a fingerprint that is not the key\'s', async () => {
    const other = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
    await refused(verifyLaunch(ca, { receipt: await sign(claims({ ssh_host_key_fp: sshFingerprint(other) })), hostCertificate: certify() }, expect), 'HOST_KEY_MISMATCH', 'hostKey');
    const { ssh_host_key: _h, ssh_host_key_fp: _f, ...noKey } = claims();
    await refused(verifyLaunch(ca, { receipt: await sign(noKey), hostCertificate: certify() }, expect), 'HOST_KEY_MISMATCH', 'hostKey');
  });

  it('hostCertificate: another CA, another name, another key, none at all', async () => {
    const receipt = await sign(claims());
    const e1 = await refused(verifyLaunch(ca, { receipt, hostCertificate: certify({ caKey: generateKeyPair('ed25519').privateKey }) }, expect), 'HOST_CERT_INVALID', 'hostCertificate');
    assert.equal(e1.detail?.['reason'], 'wrong-ca');
    const e2 = await refused(verifyLaunch(ca, { receipt, hostCertificate: certify({ principal: 'vm-zzzzzzzzzzzzzzzz' }) }, expect), 'HOST_CERT_INVALID', 'hostCertificate');
    assert.equal(e2.detail?.['reason'], 'principal');
    const e3 = await refused(verifyLaunch(ca, { receipt, hostCertificate: certify({ key: formatSshPublicKey(generateKeyPair('ed25519').publicKey) }) }, expect), 'HOST_KEY_MISMATCH', 'hostCertificate');
    assert.equal(e3.detail?.['reason'], 'key-mismatch');
    await refused(verifyLaunch(ca, { receipt, hostCertificate: 'ssh-ed25519-cert-v01@openssh.com AAAA' }, expect), 'HOST_CERT_INVALID', 'hostCertificate');
    await refused(verifyLaunch(ca, { receipt, hostCertificate: undefined }, expect), 'HOST_CERT_INVALID', 'hostCertificate');
  });

  it('authorizedKey: another login key; none attested is a note', async () => {
    const other = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
    await refused(verifyLaunch(ca, { receipt: await sign(claims({ authorized_key_fp: sshFingerprint(other) })), hostCertificate: certify() }, expect), 'AUTHORIZED_KEY_MISMATCH', 'authorizedKey');
    const { authorized_key_fp: _a, ...without } = claims();
    const v = await verifyLaunch(ca, { receipt: await sign(without), hostCertificate: certify() }, expect);
    assert.ok(!v.passed.includes('authorizedKey'));
    assert.match(v.notes.join('\n'), /does not attest the login key/);
  });

  it('runs the checks in order: the signature before any claim, the nonce before the status', async () => {
    const everythingWrong = claims({ eat_nonce: newNonce(), 'ear.status': 'contraindicated', sub: 'vm-zzzzzzzzzzzzzzzz', kernel: sha256Digest('x') });
    const other = generateKeyPair(m.receiptAlgorithm === 'ES256' ? 'ecdsa-p256' : 'ed25519').privateKey;
    await refused(verifyLaunch(ca, { receipt: await sign(everythingWrong, other), hostCertificate: undefined }, expect), 'RECEIPT_SIGNATURE_INVALID', 'signature');
    await refused(verifyLaunch(ca, { receipt: await sign(everythingWrong), hostCertificate: undefined }, expect), 'NONCE_MISMATCH', 'nonce');
    await refused(verifyLaunch(ca, { receipt: await sign({ ...everythingWrong, eat_nonce: nonce }), hostCertificate: undefined }, expect), 'RECEIPT_CONTRAINDICATED', 'status');
  });

  it('attacker bytes (receipt, certificate, input file) only ever give TrustlaunchErrors', async () => {
    const receipt = await sign(claims());
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 300 }), fc.string({ maxLength: 300 }), fc.boolean(), async (r, cert, realReceipt) => {
        try {
          await verifyLaunch(ca, { receipt: realReceipt ? receipt : r, hostCertificate: cert }, expect);
          assert.fail('accepted garbage');
        } catch (e) {
          assert.ok(e instanceof TrustlaunchError, String(e));
        }
        try {
          parseReceiptInput(r);
        } catch (e) {
          assert.ok(e instanceof TrustlaunchError, String(e));
        }
      }),
      { numRuns: 200 },
    );
  });
});
