// The evidence pipeline over HTTPS, on SQLite and PostgreSQL: one refusal per step, each
// asserting the exact code and step, that no affirming receipt exists for the nonce
// afterwards, and that the decision was recorded. Evidence comes from a software TPM and
// the hypervisor's measured boot; forgeries are made with the TPM's own commands.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { decodeReceiptUnverified, formatSshPublicKey, generateKeyPair, verifyHostCertificate, verifyReceipt } from '../../src/crypto/index.js';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { fromBase64url, toBase64url } from '../../src/protocol/base64url.js';
import { isTrustlaunchError, type ErrorCode } from '../../src/protocol/errors.js';
import type { Evidence } from '../../src/protocol/messages.js';
import { PCR, PLATFORM_PCRS } from '../../src/protocol/pcrs.js';
import { decisionsForNonce } from '../../src/ca/store/decisions.js';
import { forEachDatabase } from '../support/databases.js';
import { tempDir } from '../support/system.js';
import { startTestCa, type TestCa } from './support/ca.js';
import { defaultMeasurements, SimNode } from './support/sim-node.js';

const KERNEL = sha256Digest('kernel image');

forEachDatabase('ca evidence pipeline', (open) => {
  let ca: TestCa;
  let node: SimNode;
  let other: SimNode;
  const tmp = tempDir('tl-ca-pipeline-');

  before(async () => {
    // One judge thread on SQLite (the worker path), judging on the main thread on PostgreSQL.
    ca = await startTestCa({ databaseUrl: await open.url(), threads: open.dialect === 'sqlite' ? 1 : 0, dir: join(tmp.path, 'ca') });
    node = await SimNode.create({ nodeId: 'node-1', dir: join(tmp.path, 'nodes') });
    other = await SimNode.create({ nodeId: 'node-2', dir: join(tmp.path, 'nodes') });
    await ca.enroll(node);
    await ca.enroll(other);
    await ca.admin.addAllowlist({ name: 'kernel', kernel: KERNEL });
  });
  after(async () => {
    await node.dispose();
    await other.dispose();
    await ca.dispose();
    tmp.dispose();
  });

  /** Posts raw text as evidence; the error the CA answers with (or undefined on success). */
  async function post(body: Evidence | string): Promise<{ code?: ErrorCode; step?: string; receipt?: string; status: number }> {
    try {
      await ca.client.http.call('POST', '/v1/evidence', typeof body === 'string' ? { raw: { body: Buffer.from(body), contentType: 'application/json' } } : { body });
      return { status: 200 };
    } catch (e) {
      if (!isTrustlaunchError(e)) throw e;
      return { code: e.code, status: e.status, ...(typeof e.detail?.['step'] === 'string' ? { step: e.detail['step'] } : {}), ...(typeof e.detail?.['receipt'] === 'string' ? { receipt: e.detail['receipt'] } : {}) };
    }
  }

  /** No affirming receipt for the nonce: none at all, or the CA's signed "no". */
  async function assertNoAffirmingReceipt(nonce: string): Promise<void> {
    try {
      const r = await ca.client.receipt(nonce);
      assert.equal(decodeReceiptUnverified(r.receipt).claims['ear.status'], 'contraindicated');
      assert.equal(r.hostCertificate, undefined, 'no host certificate without an affirming receipt');
    } catch (e) {
      assert.ok(isTrustlaunchError(e, 'NOT_FOUND'), String(e));
    }
  }

  /** Posts evidence and asserts the refusal: code, step, a contraindicated receipt naming them, the decision. */
  async function refused(evidence: Evidence, code: ErrorCode, step: string, opts: { receipted?: boolean } = {}): Promise<void> {
    const r = await post(evidence);
    assert.equal(r.code, code, `expected ${code}, got ${JSON.stringify(r)}`);
    assert.equal(r.step, step);
    await assertNoAffirmingReceipt(evidence.claims.nonce);
    if (opts.receipted !== false) {
      assert.ok(r.receipt !== undefined, 'the refusal carries the contraindicated receipt');
      const stored = await ca.client.receipt(evidence.claims.nonce);
      assert.equal(stored.receipt, r.receipt);
      const claims = await verifyReceipt(stored.receipt, { keys: ca.material.identity.receiptKeys, issuer: ca.material.config.issuer, expectedNonce: evidence.claims.nonce });
      assert.equal(claims['ear.status'], 'contraindicated');
      assert.deepEqual({ step: claims.reason?.step, code: claims.reason?.code }, { step, code });
      assert.equal(claims.sub, evidence.claims.vmId);
    }
    const decisions = await decisionsForNonce(ca.service.store.db, evidence.claims.nonce);
    const last = decisions[decisions.length - 1];
    assert.deepEqual([last?.code, last?.step, last?.kind], [code, step, 'evidence']);
  }

  it('affirms good evidence: a verifiable receipt and a host certificate for the VM key', async () => {
    const evidence = await node.evidence();
    const r = await ca.client.evidence(evidence);
    assert.equal(r.status, 'affirming');
    const claims = await verifyReceipt(r.receipt, { keys: ca.material.identity.receiptKeys, issuer: ca.material.config.issuer, expectedNonce: evidence.claims.nonce });
    assert.equal(claims['ear.status'], 'affirming');
    assert.equal(claims.node, 'node-1');
    verifyHostCertificate(r.hostCertificate, { caPublicKey: ca.material.sshCaPublicKey, hostKey: evidence.claims.sshHostKey, principal: evidence.claims.hostname });
    assert.deepEqual(await ca.client.receipt(evidence.claims.nonce), { receipt: r.receipt, hostCertificate: r.hostCertificate });
    const [d] = await decisionsForNonce(ca.service.store.db, evidence.claims.nonce);
    assert.equal(d?.outcome, 'affirming');
    assert.equal(d?.evidence_hash, sha256Digest(JSON.stringify(evidence)));
  });

  it('schema: not JSON, or JSON of the wrong shape without claims → 400 MALFORMED_REQUEST, recorded, nothing receipted', async () => {
    for (const body of ['{"claims":', '[]', '{"claims":{}}', JSON.stringify({ hello: 'world' })]) {
      const before = (await ca.admin.decisions({ limit: 1000 })).decisions.length;
      const r = await post(body);
      assert.deepEqual([r.status, r.code, r.step, r.receipt], [400, 'MALFORMED_REQUEST', 'schema', undefined], body);
      const after = (await ca.admin.decisions({ limit: 1000 })).decisions;
      assert.equal(after.length, before + 1);
      assert.deepEqual([after[after.length - 1]?.outcome, after[after.length - 1]?.code], ['refused', 'MALFORMED_REQUEST']);
    }
  });

  it('schema: valid claims with a malformed rest → 400 with a contraindicated receipt for the nonce', async () => {
    const evidence = await node.evidence();
    const broken = { ...evidence, eventLog: 'not a log' } as unknown as Evidence;
    await refused(broken, 'MALFORMED_REQUEST', 'schema');
  });

  it('schema: a host key line whose blob is not a key → MALFORMED_KEY', async () => {
    const bad = `ssh-ed25519 ${Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0, 0, 0, 3, 1, 2, 3])]).toString('base64')}`;
    await refused(await node.evidence(node.claims({ sshHostKey: bad })), 'MALFORMED_KEY', 'schema');
  });

  it('node: an unregistered node → NODE_UNKNOWN', async () => {
    await refused(await node.evidence(node.claims({ nodeId: 'ghost-node' })), 'NODE_UNKNOWN', 'node');
  });

  it('quoteSignature: quoted by another TPM (a registered node signing for this one) → QUOTE_SIGNATURE_INVALID', async () => {
    const claims = node.claims();
    await refused(await other.evidence(claims), 'QUOTE_SIGNATURE_INVALID', 'quoteSignature');
    const good = await node.evidence();
    const attest = fromBase64url(good.quote.attest);
    attest[attest.length - 1] = (attest[attest.length - 1] as number) ^ 1;
    await refused({ ...good, quote: { ...good.quote, attest: toBase64url(attest) } }, 'QUOTE_SIGNATURE_INVALID', 'quoteSignature');
  });

  it('tpmGenerated: a TPM2_Sign forgery and a TPM2_Certify structure signed by the AK → QUOTE_NOT_TPM_GENERATED', async () => {
    const good = await node.evidence();
    const forged = fromBase64url(good.quote.attest);
    forged[0] = 0x00; // the TPM signs only data that does not start with TPM_GENERATED_VALUE
    const engine = node.device.engine;
    const signature = engine.sign(node.ak.handle, forged, engine.hash(forged).ticket);
    await refused({ ...good, quote: { ...good.quote, attest: toBase64url(forged), signature: toBase64url(signature) } }, 'QUOTE_NOT_TPM_GENERATED', 'tpmGenerated');
    const claims = node.claims();
    const certified = engine.certify(node.ak.handle, node.ak.handle, createHash('sha256').update(canonicalBytes(claims)).digest());
    const base = await node.evidence(claims);
    await refused({ ...base, quote: { ...base.quote, attest: toBase64url(certified.attest), signature: toBase64url(certified.signature) } }, 'QUOTE_NOT_TPM_GENERATED', 'tpmGenerated');
  });

  it('qualifyingData: claims changed after the quote (dom0 swaps the host key) → QUALIFYING_DATA_MISMATCH', async () => {
    const evidence = await node.evidence();
    const swapped = { ...evidence, claims: { ...evidence.claims, sshHostKey: formatSshPublicKey(generateKeyPair('ed25519').publicKey) } };
    await refused(swapped, 'QUALIFYING_DATA_MISMATCH', 'qualifyingData');
  });

  it('pcrs: a supplied PCR value that is not the quoted one → PCR_DIGEST_MISMATCH; a quote over other PCRs → PCR_SELECTION_MISMATCH', async () => {
    const evidence = await node.evidence();
    const pcrs = { sha256: { ...evidence.quote.pcrs.sha256, [String(PCR.MINIDOMAIN)]: '11'.repeat(32) } };
    await refused({ ...evidence, quote: { ...evidence.quote, pcrs } }, 'PCR_DIGEST_MISMATCH', 'pcrs');
    const claims = node.claims();
    const partial = await node.quote(createHash('sha256').update(canonicalBytes(claims)).digest(), node.ak, PLATFORM_PCRS.filter((p) => p !== PCR.MINIDOMAIN));
    await refused({ claims, quote: partial, eventLog: node.eventLog }, 'PCR_SELECTION_MISMATCH', 'pcrs');
  });

  it('eventLog: a log that does not replay to the quoted PCRs → EVENT_LOG_REPLAY_MISMATCH; two SHA-256 digests in one event → EVENT_LOG_MALFORMED', async () => {
    const evidence = await node.evidence();
    await refused({ ...evidence, eventLog: evidence.eventLog.filter((e) => e.pcrIndex !== PCR.MINIDOMAIN) }, 'EVENT_LOG_REPLAY_MISMATCH', 'eventLog');
    const doubled = evidence.eventLog.map((e) => ({ ...e, digests: [...e.digests, ...e.digests] }));
    await refused({ ...(await node.evidence()), eventLog: doubled }, 'EVENT_LOG_MALFORMED', 'eventLog');
  });

  it('platform: a node whose measurements match no reference value any more → PLATFORM_NOT_TRUSTED', async () => {
    const odd = await SimNode.create({ nodeId: 'node-odd', dir: join(tmp.path, 'nodes'), measurements: defaultMeasurements('odd') });
    try {
      await ca.enroll(odd);
      await ca.admin.removePlatform('platform-node-odd');
      await refused(await odd.evidence(), 'PLATFORM_NOT_TRUSTED', 'platform');
    } finally {
      await odd.dispose();
    }
  });

  it('kernel: not allowlisted, expired, revoked, and a swapped initrd under a triple pin', async () => {
    await refused(await node.evidence(node.claims({ kernel: sha256Digest('a kernel nobody allowed') })), 'KERNEL_NOT_ALLOWED', 'kernel');
    const expired = sha256Digest('an old kernel');
    await ca.admin.addAllowlist({ name: 'expired', kernel: expired, expiresAt: new Date(Date.now() - 60_000).toISOString() });
    await refused(await node.evidence(node.claims({ kernel: expired })), 'KERNEL_EXPIRED', 'kernel');
    const bad = sha256Digest('a vulnerable kernel');
    await ca.admin.addAllowlist({ name: 'vulnerable', kernel: bad });
    assert.equal((await ca.client.evidence(await node.evidence(node.claims({ kernel: bad })))).status, 'affirming');
    await ca.admin.revokeAllowlist('vulnerable');
    await refused(await node.evidence(node.claims({ kernel: bad })), 'KERNEL_REVOKED', 'kernel');
    const triple = { kernel: sha256Digest('vmlinuz'), initrd: sha256Digest('initrd.img'), cmdline: sha256Digest('console=ttyS0') };
    await ca.admin.addAllowlist({ name: 'qemu-guest', ...triple });
    assert.equal((await ca.client.evidence(await node.evidence(node.claims(triple)))).status, 'affirming');
    await refused(await node.evidence(node.claims({ ...triple, initrd: sha256Digest('initrd that leaks the host key') })), 'KERNEL_NOT_ALLOWED', 'kernel');
  });

  it('nonce: the same evidence twice → NONCE_REUSED, and the receipt stays exactly as it was', async () => {
    const evidence = await node.evidence();
    const first = await ca.client.evidence(evidence);
    const r = await post(evidence);
    assert.deepEqual([r.code, r.step, r.status, r.receipt], ['NONCE_REUSED', 'nonce', 409, undefined]);
    assert.deepEqual(await ca.client.receipt(evidence.claims.nonce), { receipt: first.receipt, hostCertificate: first.hostCertificate });
    // Another VM claiming the same nonce, and a refused one: no new receipt either.
    const again = await node.evidence(node.claims({ nonce: evidence.claims.nonce }));
    assert.equal((await post(again)).code, 'NONCE_REUSED');
    const refusedToo = await post(await node.evidence(node.claims({ nonce: evidence.claims.nonce, kernel: sha256Digest('unknown') })));
    assert.deepEqual([refusedToo.code, refusedToo.receipt], ['KERNEL_NOT_ALLOWED', undefined]);
    assert.deepEqual(await ca.client.receipt(evidence.claims.nonce), { receipt: first.receipt, hostCertificate: first.hostCertificate });
    const decisions = await decisionsForNonce(ca.service.store.db, evidence.claims.nonce);
    assert.deepEqual(decisions.map((d) => [d.outcome, d.code]), [['affirming', null], ['refused', 'NONCE_REUSED'], ['refused', 'NONCE_REUSED'], ['refused', 'KERNEL_NOT_ALLOWED']]);
  });

  it('nonce: concurrent copies of one evidence → exactly one affirming, the rest NONCE_REUSED', async () => {
    const evidence = await node.evidence();
    const results = await Promise.all(Array.from({ length: 12 }, () => post(evidence)));
    assert.equal(results.filter((r) => r.status === 200).length, 1);
    assert.equal(results.filter((r) => r.code === 'NONCE_REUSED').length, 11);
  });

  it('time: evidence made too long ago, or in the future → EVIDENCE_STALE', async () => {
    const skew = ca.material.config.evidenceSkewSeconds;
    await refused(await node.evidence(node.claims({ time: Math.floor(Date.now() / 1000) - skew - 60 })), 'EVIDENCE_STALE', 'time');
    await refused(await node.evidence(node.claims({ time: Math.floor(Date.now() / 1000) + skew + 60 })), 'EVIDENCE_STALE', 'time');
  });

  it('a policy change written by another CA process is seen: an allowlist entry added behind this process affirms at once', async () => {
    const kernel = sha256Digest('added elsewhere');
    await ca.service.store.db.insertInto('ca_allowlist').values({ name: 'elsewhere', kernel, initrd: null, cmdline: null, created_at: Date.now(), expires_at: null, revoked_at: null }).execute();
    assert.equal((await ca.client.evidence(await node.evidence(node.claims({ kernel })))).status, 'affirming');
  });

  it('a revocation written behind this process is enforced by the commit: NODE_REVOKED, KERNEL_REVOKED', async () => {
    const kernel = sha256Digest('revoked elsewhere');
    await ca.admin.addAllowlist({ name: 'revoked-elsewhere', kernel });
    await ca.service.store.db.updateTable('ca_allowlist').set({ revoked_at: Date.now() }).where('name', '=', 'revoked-elsewhere').execute();
    await refused(await node.evidence(node.claims({ kernel })), 'KERNEL_REVOKED', 'kernel');
    const late = await SimNode.create({ nodeId: 'node-late', dir: join(tmp.path, 'nodes') });
    try {
      await ca.enroll(late);
      await ca.service.store.db.updateTable('ca_nodes').set({ status: 'revoked', revoked_at: Date.now() }).where('id', '=', 'node-late').execute();
      await refused(await late.evidence(), 'NODE_REVOKED', 'node');
    } finally {
      await late.dispose();
    }
  });

  it('node: a revoked node → NODE_REVOKED from then on', async () => {
    assert.equal((await ca.client.evidence(await other.evidence())).status, 'affirming');
    await ca.admin.revokeNode('node-2', 'decommissioned');
    await refused(await other.evidence(), 'NODE_REVOKED', 'node');
    assert.equal((await ca.admin.node('node-2')).revokeReason, 'decommissioned');
  });
});
