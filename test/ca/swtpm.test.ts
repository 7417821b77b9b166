// A node with a real TPM 2.0 (swtpm, manufactured by swtpm_setup with swtpm_localca EK
// certificates) registers with the CA and gets an affirming receipt for its evidence —
// the EK chain, credential activation and quotes all from a TPM nobody here wrote. A
// second swtpm whose vendor CA the CA does not trust is refused.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCertificate } from '../../src/crypto/x509.js';
import { verifyReceipt } from '../../src/crypto/receipts.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { SwtpmAuthDevice } from '../../src/tpm/swtpm/swtpm-device.js';
import { requireSwtpmTools } from '../tpm/swtpm/support.js';
import { tempDir } from '../support/system.js';
import { startTestCa, type TestCa } from './support/ca.js';
import { SimNode } from './support/sim-node.js';

describe('a node with swtpm', () => {
  const tmp = tempDir('tl-ca-swtpm-');
  let ca: TestCa;
  let node: SimNode<SwtpmAuthDevice>;

  before(async () => {
    requireSwtpmTools();
    ca = await startTestCa({ databaseUrl: `sqlite:${tmp.path}/ca.db`, dir: join(tmp.path, 'ca') });
    const device = new SwtpmAuthDevice({ nodeDir: join(tmp.path, 'node') });
    await device.powerOn();
    node = await SimNode.boot(device, { nodeId: 'swtpm-node', ek: 'rsa2048', manufacturerCa: parseCertificate(readFileSync(device.layout.rootCertificate, 'utf8')) });
  });
  after(async () => {
    await node.device.powerOff();
    await ca.dispose();
    tmp.dispose();
  });

  it("refuses the swtpm's EK while its vendor CA is not an endorsement root (EK_CERT_INVALID)", async () => {
    const { token } = await ca.admin.createToken();
    await assert.rejects(ca.client.startRegistration(node.registrationRequest(token)), (e) => isTrustlaunchError(e, 'EK_CERT_INVALID'));
  });

  it('registers it once swtpm_localca is trusted, and affirms its evidence', async () => {
    // swtpm_localca signs EK certificates with an intermediate ("issuercert") under its root.
    await ca.trustManufacturer(parseCertificate(readFileSync(node.device.layout.rootCertificate, 'utf8')));
    await ca.trustManufacturer(parseCertificate(readFileSync(node.device.layout.issuerCertificate, 'utf8')));
    await ca.enroll(node);
    assert.equal((await ca.admin.node('swtpm-node')).status, 'active');
    await ca.admin.addAllowlist({ name: 'kernel', kernel: sha256Digest('kernel image') });
    const evidence = await node.evidence();
    const r = await ca.client.evidence(evidence);
    const claims = await verifyReceipt(r.receipt, { keys: ca.material.identity.receiptKeys, issuer: ca.material.config.issuer, expectedNonce: evidence.claims.nonce });
    assert.deepEqual([claims['ear.status'], claims.node], ['affirming', 'swtpm-node']);
  });
});
