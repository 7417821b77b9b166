// Node registration (DESIGN.md §4.1) over HTTPS, on SQLite and PostgreSQL, with software
// TPMs: every refusal the issue names (wrong EK chain, wrong credential answer, an AK
// without fixedTPM/restricted, a platform mismatch, a reused or expired token) and the
// others of the pipeline — each with its exact code, no node left behind, and a decision.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { ensureManufacturerCa } from '../../src/tpm/sim/manufacturer-ca.js';
import { issueCertificate, parseCertificate } from '../../src/crypto/x509.js';
import { hashToken } from '../../src/http/auth.js';
import { fromBase64url, toBase64url } from '../../src/protocol/base64url.js';
import { isTrustlaunchError, type ErrorCode } from '../../src/protocol/errors.js';
import { objectAttributes } from '../../src/tpm/structures/object-attributes.js';
import { objectName } from '../../src/tpm/crypto/name.js';
import { AK_TEMPLATE_ECC_P256, EK_HANDLE } from '../../src/tpm/templates.js';
import { NV_INDEX, NV_INDEX_MAX, type AttestationKey } from '../../src/tpm/auth-device.js';
import { insertToken } from '../../src/ca/store/tokens.js';
import { findNode } from '../../src/ca/store/nodes.js';
import { forEachDatabase } from '../support/databases.js';
import { tempDir } from '../support/system.js';
import { startTestCa, type TestCa } from './support/ca.js';
import { defaultMeasurements, SimNode } from './support/sim-node.js';

forEachDatabase('ca registration', (open) => {
  let ca: TestCa;
  const tmp = tempDir('tl-ca-reg-');
  const nodesDir = join(tmp.path, 'nodes');
  let seq = 0;

  before(async () => {
    ca = await startTestCa({ databaseUrl: await open.url(), dir: join(tmp.path, 'ca') });
    // The manufacturer of every node below (one directory, one manufacturer CA) and the platform they boot.
    const probe = await SimNode.create({ nodeId: 'probe', dir: nodesDir });
    await ca.trustManufacturer(probe.manufacturerCa);
    await ca.admin.addPlatform(probe.platformReference('trusted'));
    await probe.dispose();
  });
  after(async () => {
    await ca.dispose();
    tmp.dispose();
  });

  const newNode = (opts: Parameters<typeof SimNode.create>[0] = {}): Promise<SimNode> => SimNode.create({ nodeId: `node-${++seq}`, dir: nodesDir, ...opts });

  /** `nodeId`: the node that must not exist; its id is on the decision unless the registration itself was not found. */
  async function refusedWith(code: ErrorCode, step: string, fn: () => Promise<unknown>, nodeId: string): Promise<void> {
    await assert.rejects(fn(), (e) => {
      assert.ok(isTrustlaunchError(e), String(e));
      assert.equal(e.code, code, e.message);
      assert.equal(e.detail?.['step'], step);
      return true;
    });
    assert.equal(await findNode(ca.service.store.db, nodeId), undefined, 'no node was created');
    const { decisions } = await ca.admin.decisions(code === 'REGISTRATION_NOT_FOUND' ? { limit: 1000 } : { limit: 1000, node: nodeId });
    const last = decisions[decisions.length - 1];
    assert.deepEqual([last?.kind, last?.outcome, last?.code, last?.step], ['registration', 'refused', code, step]);
  }

  it('registers a node: challenge, credential activated by its TPM, platform quote → active, with the CA root for its device NV', async () => {
    const node = await newNode();
    const { token } = await ca.admin.createToken();
    const challenge = await ca.client.startRegistration(node.registrationRequest(token));
    const result = await ca.client.answerRegistration(challenge.registrationId, await node.answer(challenge));
    assert.deepEqual(result, { nodeId: node.nodeId, status: 'active', caChain: [ca.material.root.certificate.pem] });
    const view = await ca.admin.node(node.nodeId);
    assert.deepEqual([view.status, view.platform], ['active', 'trusted']);
    // The root certificate fits a device NV index: the node stores it there and pins TLS to it.
    const der = parseCertificate(result.caChain[0] as string).der;
    assert.ok(der.length <= NV_INDEX_MAX);
    await node.device.nvDefine(NV_INDEX.CA_CERTIFICATE, { size: der.length });
    await node.device.nvWrite(NV_INDEX.CA_CERTIFICATE, der);
    assert.deepEqual(Buffer.from(await node.device.nvRead(NV_INDEX.CA_CERTIFICATE)), der);
    const { decisions } = await ca.admin.decisions({ node: node.nodeId });
    assert.deepEqual(decisions.map((d) => d.outcome), ['challenged', 'registered']);
    await node.dispose();
  });

  it('an RSA-2048 EK with an RSA-2048 AK registers too', async () => {
    const node = await newNode({ ek: 'rsa2048', ak: 'rsa2048' });
    await ca.enroll(node);
    assert.equal((await ca.admin.node(node.nodeId)).status, 'active');
    await node.dispose();
  });

  it('EK certificate from an untrusted manufacturer → EK_CERT_INVALID; the token stays usable', async () => {
    const stranger = await SimNode.create({ nodeId: `node-${++seq}`, dir: join(tmp.path, 'stranger') });
    const { token } = await ca.admin.createToken();
    await refusedWith('EK_CERT_INVALID', 'ekCertificate', () => ca.client.startRegistration(stranger.registrationRequest(token)), stranger.nodeId);
    const node = await newNode();
    const challenge = await ca.client.startRegistration(node.registrationRequest(token));
    assert.ok(challenge.registrationId.length >= 16, 'nothing was consumed by the refusal');
    await stranger.dispose();
    await node.dispose();
  });

  it('an EK certificate without the TCG EK extended key usage → EK_CERT_INVALID', async () => {
    const node = await newNode();
    const manufacturer = await ensureManufacturerCa(nodesDir);
    const ekKey = parseCertificate(node.endorsement.certificate).publicKey;
    const clientCert = await issueCertificate({ issuer: manufacturer, subjectPublicKey: ekKey, commonName: 'not an EK certificate', profile: 'client' });
    const { token } = await ca.admin.createToken();
    await refusedWith('EK_CERT_INVALID', 'ekCertificate', () => ca.client.startRegistration(node.registrationRequest(token, { ekCertificate: clientCert.der })), node.nodeId);
    await node.dispose();
  });

  it("another TPM's EK certificate with this TPM's EK → EK_CERT_MISMATCH", async () => {
    const [a, b] = [await newNode(), await newNode()];
    const { token } = await ca.admin.createToken();
    await refusedWith('EK_CERT_MISMATCH', 'ekCertificate', () => ca.client.startRegistration(a.registrationRequest(token, { ekCertificate: b.endorsement.certificate })), a.nodeId);
    await a.dispose();
    await b.dispose();
  });

  it('an AK without fixedTPM, or not restricted → AK_ATTRIBUTES_INVALID; a name that is not its name → AK_NAME_MISMATCH', async () => {
    const node = await newNode();
    const engine = node.device.engine;
    const { token } = await ca.admin.createToken();
    const loose = await engine.createPersistent(EK_HANDLE['ecc-p256'], { ...AK_TEMPLATE_ECC_P256, objectAttributes: objectAttributes('fixedParent', 'sensitiveDataOrigin', 'userWithAuth', 'restricted', 'sign') }, 0x81010120);
    await refusedWith('AK_ATTRIBUTES_INVALID', 'attestationKey', () => ca.client.startRegistration(node.registrationRequest(token, { akPublic: loose.publicBytes, akName: loose.name })), node.nodeId);
    const signer = await engine.createPersistent(EK_HANDLE['ecc-p256'], { ...AK_TEMPLATE_ECC_P256, objectAttributes: objectAttributes('fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'userWithAuth', 'sign') }, 0x81010121);
    await refusedWith('AK_ATTRIBUTES_INVALID', 'attestationKey', () => ca.client.startRegistration(node.registrationRequest(token, { akPublic: signer.publicBytes, akName: signer.name })), node.nodeId);
    await refusedWith('AK_NAME_MISMATCH', 'attestationKey', () => ca.client.startRegistration(node.registrationRequest(token, { akName: objectName(loose.publicBytes) })), node.nodeId);
    await node.dispose();
  });

  it('a wrong credential answer → CREDENTIAL_MISMATCH, and the challenge is spent', async () => {
    const node = await newNode();
    const { token } = await ca.admin.createToken();
    const challenge = await ca.client.startRegistration(node.registrationRequest(token));
    const answer = await node.answer(challenge);
    const secret = fromBase64url(answer.secret);
    secret[0] = (secret[0] as number) ^ 1;
    await refusedWith('CREDENTIAL_MISMATCH', 'credential', () => ca.client.answerRegistration(challenge.registrationId, { ...answer, secret: toBase64url(secret) }), node.nodeId);
    await refusedWith('REGISTRATION_NOT_FOUND', 'registration', () => ca.client.answerRegistration(challenge.registrationId, answer), node.nodeId);
    await node.dispose();
  });

  it("another TPM cannot activate the credential (its AK name and EK differ): the challenge binds this TPM's AK", async () => {
    const [node, thief] = [await newNode(), await newNode()];
    const { token } = await ca.admin.createToken();
    const challenge = await ca.client.startRegistration(node.registrationRequest(token));
    await assert.rejects(thief.device.activateCredential(thief.ak, 'ecc-p256', fromBase64url(challenge.credentialBlob), fromBase64url(challenge.encryptedSecret)), (e) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY'));
    // Nor can the node's own TPM activate it for another of its keys.
    const other: AttestationKey = await (async () => {
      const o = await node.device.engine.createPersistent(EK_HANDLE['ecc-p256'], AK_TEMPLATE_ECC_P256, 0x81010122);
      return { handle: o.handle, public: o.publicBytes, name: o.name };
    })();
    await assert.rejects(node.device.activateCredential(other, 'ecc-p256', fromBase64url(challenge.credentialBlob), fromBase64url(challenge.encryptedSecret)), (e) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY'));
    await node.dispose();
    await thief.dispose();
  });

  it('a platform that matches no reference value → PLATFORM_NOT_TRUSTED', async () => {
    const node = await newNode({ measurements: defaultMeasurements('tampered hypervisor') });
    const { token } = await ca.admin.createToken();
    const challenge = await ca.client.startRegistration(node.registrationRequest(token));
    await refusedWith('PLATFORM_NOT_TRUSTED', 'platform', async () => ca.client.answerRegistration(challenge.registrationId, await node.answer(challenge)), node.nodeId);
    await node.dispose();
  });

  it('a quote with stale qualifying data, or over PCRs the log does not explain → refused', async () => {
    const node = await newNode();
    const { token } = await ca.admin.createToken();
    const challenge = await ca.client.startRegistration(node.registrationRequest(token));
    const answer = await node.answer(challenge);
    const stale = await node.quote(Buffer.alloc(32, 7));
    await refusedWith('QUALIFYING_DATA_MISMATCH', 'quote', () => ca.client.answerRegistration(challenge.registrationId, { ...answer, quote: stale }), node.nodeId);
    const { token: token2 } = await ca.admin.createToken();
    const challenge2 = await ca.client.startRegistration(node.registrationRequest(token2));
    await node.tamper(4);
    await refusedWith('EVENT_LOG_REPLAY_MISMATCH', 'eventLog', async () => ca.client.answerRegistration(challenge2.registrationId, await node.answer(challenge2)), node.nodeId);
    await node.dispose();
  });

  it('a reused, an expired or an unknown token → TOKEN_INVALID', async () => {
    const [a, b] = [await newNode(), await newNode()];
    const { token } = await ca.admin.createToken();
    await ca.client.startRegistration(a.registrationRequest(token));
    await refusedWith('TOKEN_INVALID', 'token', () => ca.client.startRegistration(b.registrationRequest(token)), b.nodeId);
    const expired = 'tlenr_expiredexpiredexpiredexpiredexpiredexpired12';
    await insertToken(ca.service.store.db, { id: `old${seq}`, tokenHash: hashToken(expired), createdAt: Date.now() - 7200_000, expiresAt: Date.now() - 3600_000 });
    await refusedWith('TOKEN_INVALID', 'token', () => ca.client.startRegistration(b.registrationRequest(expired)), b.nodeId);
    await refusedWith('TOKEN_INVALID', 'token', () => ca.client.startRegistration(b.registrationRequest('tlenr_nobodyevermadethistokennobodyevermadethistok')), b.nodeId);
    await a.dispose();
    await b.dispose();
  });

  it('one token, many concurrent registrations → exactly one challenge', async () => {
    const nodes = await Promise.all(Array.from({ length: 6 }, () => newNode()));
    const { token } = await ca.admin.createToken();
    const results = await Promise.allSettled(nodes.map((n) => ca.client.startRegistration(n.registrationRequest(token))));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(isTrustlaunchError(r.reason, 'TOKEN_INVALID'));
    await Promise.all(nodes.map((n) => n.dispose()));
  });

  it('an expired challenge → REGISTRATION_NOT_FOUND; an already registered node id → NODE_ALREADY_REGISTERED', async () => {
    const node = await newNode();
    const { token } = await ca.admin.createToken();
    const challenge = await ca.client.startRegistration(node.registrationRequest(token));
    await ca.service.store.db.updateTable('ca_registrations').set({ expires_at: Date.now() - 1 }).where('id', '=', challenge.registrationId).execute();
    await refusedWith('REGISTRATION_NOT_FOUND', 'registration', async () => ca.client.answerRegistration(challenge.registrationId, await node.answer(challenge)), node.nodeId);
    await ca.enroll(node);
    const { token: again } = await ca.admin.createToken();
    await assert.rejects(ca.client.startRegistration(node.registrationRequest(again)), (e) => isTrustlaunchError(e, 'NODE_ALREADY_REGISTERED') && e.detail?.['step'] === 'node');
    await node.dispose();
  });
});
