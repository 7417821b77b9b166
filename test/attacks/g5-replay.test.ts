// G5 — every replayed message is detected (nonces, one use each). A hostile dom0 replays:
//   - a recorded evidence, byte for byte: the CA judged that (node, nonce) already →
//     NONCE_REUSED, and the one receipt for the nonce is unchanged;
//   - the manager's create request, launching a second VM with the user's nonce: the second
//     VM's evidence is NONCE_REUSED; the mini-domain finds the CA's receipt names the first
//     VM and refuses the second (NONCE_REUSED, shown to dom0); its host key is never
//     certified, so the user cannot be pointed at it;
//   - an old receipt to a user who sent a fresh nonce: NONCE_MISMATCH at the user.
// Nothing is accepted twice: one affirming decision per nonce.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { verifyReceipt } from '../../src/crypto/receipts.js';
import { formatSshPublicKey, generateKeyPair } from '../../src/crypto/index.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { createVm, waitForAttestation } from '../node/support/cluster.js';
import { useCluster } from '../support/cluster-hooks.js';
import { ssh } from '../node/vm/support.js';
import { caDecisions, recordedEvidence, userFetchesReceipt } from './support.js';

void describe('G5: replays are detected', () => {
  const cluster = useCluster();

  void it('the same nonce for a second VM: refused NONCE_REUSED; only the first VM\'s key is ever certified', async () => {
    const c = cluster();
    const first = await createVm(c, { vmId: 'vm-g5-first' });
    assert.equal((await waitForAttestation(c, first.vmId)).attestation.state, 'attested');
    const second = await createVm(c, { vmId: 'vm-g5-second', nonce: first.nonce, hostname: first.hostname });
    const refused = await waitForAttestation(c, second.vmId);
    assert.deepEqual(refused.attestation, { state: 'refused', code: 'NONCE_REUSED' });
    const receipt = await userFetchesReceipt(c, first.nonce);
    assert.equal(receipt?.sub, 'vm-g5-first');
    assert.equal((await caDecisions(c)).filter((d) => d.nonce === first.nonce && d.outcome === 'affirming').length, 1);
    // The user, trusting the CA's key for that hostname, is not fooled by the second VM.
    const identity = await c.ca.client.keys();
    const r = await ssh({ port: refused.ssh?.port as number, key: c.key, knownHosts: `@cert-authority ${first.hostname} ${identity.sshCaKey}\n`, hostKeyAlias: first.hostname, command: 'echo fooled' });
    assert.equal(r.status, 255);
  });

  void it('a recorded evidence replayed byte for byte: NONCE_REUSED; one receipt', async () => {
    const c = cluster();
    const eventLog = c.node.hypervisor.eventLog();
    await c.stopNode();
    try {
      const claims = { nodeId: 'node-1', vmId: 'vm-g5-replay', nonce: newNonce(), hostname: 'vm-g5-replay.trustlaunch.test', kernel: c.guestDigest, sshHostKey: formatSshPublicKey(generateKeyPair('ed25519').publicKey), time: Math.floor(Date.now() / 1000) };
      const evidence = await recordedEvidence(c, eventLog, claims);
      const accepted = await c.ca.client.evidence(evidence);
      assert.equal(accepted.status, 'affirming');
      await assert.rejects(c.ca.client.evidence(evidence), (e) => isTrustlaunchError(e, 'NONCE_REUSED'));
      await assert.rejects(c.ca.client.evidence(JSON.parse(JSON.stringify(evidence)) as typeof evidence), (e) => isTrustlaunchError(e, 'NONCE_REUSED'));
      assert.equal((await c.ca.client.receipt(claims.nonce)).receipt, accepted.receipt);
      assert.equal((await caDecisions(c)).filter((d) => d.nonce === claims.nonce && d.outcome === 'affirming').length, 1);
    } finally {
      await c.restartNode();
    }
  });

  void it('an old receipt handed to a user with a fresh nonce: NONCE_MISMATCH', async () => {
    const c = cluster();
    const old = await createVm(c, { vmId: 'vm-g5-old' });
    await waitForAttestation(c, old.vmId);
    const { receipt } = await c.ca.client.receipt(old.nonce);
    const identity = await c.ca.client.keys();
    await assert.rejects(verifyReceipt(receipt, { keys: identity.receiptKeys, issuer: identity.issuer, expectedNonce: newNonce() }), (e) => isTrustlaunchError(e, 'NONCE_MISMATCH'));
  });
});
