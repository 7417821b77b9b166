// G1 — the user accepts a VM only with a CA signature over its nonce, its SSH host key and
// an allowlisted kernel, from a registered node that measured right. A hostile dom0 tries
// to change what the user ends up trusting:
//   - it swaps the user's nonce for its own when it builds the VM: the CA signs the claims
//     it was shown, so the user finds no receipt for their nonce, and the receipt dom0
//     offers instead fails the user's nonce check (NONCE_MISMATCH);
//   - it wants a host key it knows: the key comes only from the VM's own channel, so it must
//     boot an image that leaks or chooses the key — which is not the allowlisted kernel
//     (KERNEL_NOT_ALLOWED); or it answers the user's SSH connection itself: the user's
//     client, trusting only the CA's key (or the receipt's host key), refuses it;
//   - it rewrites a recorded evidence (nonce, host key) before the CA sees it: the quote no
//     longer covers the claims (QUALIFYING_DATA_MISMATCH).
// Each time nothing is accepted: no affirming receipt for the user's nonce or dom0's key.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { verifyReceipt } from '../../src/crypto/receipts.js';
import { formatSshPublicKey, generateKeyPair } from '../../src/crypto/index.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { ownBuffer } from '../../src/node/dom0/images.js';
import { defaultGuestImage } from '../../src/node/vm/process/index.js';
import { createVm, waitForAttestation } from '../node/support/cluster.js';
import { useCluster } from '../support/cluster-hooks.js';
import { ssh, tamperedGuestImage } from '../node/vm/support.js';
import { startSshd } from '../support/sshd.js';
import { caDecisions, eventually, hostileDom0, recordedEvidence, userAccepts, userFetchesReceipt } from './support.js';

const MiB = 1024 * 1024;

void describe('G1: dom0 cannot change what the user trusts', () => {
  const cluster = useCluster();

  /** dom0 builds and starts a VM through its own capability, with launch metadata of its choosing. */
  async function dom0Builds(name: string, image: Uint8Array, nonce: string): Promise<number> {
    const c = cluster();
    const cap = hostileDom0(c).capability;
    const hostname = `${name}.trustlaunch.test`;
    const vm = await cap.buildVm({ name, image: ownBuffer(Buffer.from(image)), memoryBytes: 128 * MiB, guest: { hostname, authorizedKeys: [c.key.publicKey] }, launch: { nonce, hostname, authorizedKey: c.key.publicKey } });
    await cap.startVm(vm.vmId);
    return vm.vmId;
  }

  void it('a swapped nonce: the user finds no receipt for theirs, and the one dom0 offers fails the nonce check', async () => {
    const c = cluster();
    const userNonce = newNonce();
    const dom0Nonce = newNonce();
    const vmId = await dom0Builds('vm-g1-nonce', defaultGuestImage(), dom0Nonce);
    const cap = hostileDom0(c).capability;
    await eventually('the CA to judge dom0\'s claims', () => ['attested', 'refused'].includes(cap.vm(vmId).attestation.state));
    assert.equal(await userFetchesReceipt(c, userNonce), undefined, "a receipt exists for the user's nonce");
    const offered = await c.ca.client.receipt(dom0Nonce);
    const identity = await c.ca.client.keys();
    await assert.rejects(verifyReceipt(offered.receipt, { keys: identity.receiptKeys, issuer: identity.issuer, expectedNonce: userNonce }), (e) => isTrustlaunchError(e, 'NONCE_MISMATCH'));
    assert.equal((await caDecisions(c)).some((d) => d.nonce === userNonce), false);
  });

  void it('a host key dom0 knows needs another image: the CA refuses it; the leaked key is never certified', async () => {
    const c = cluster();
    const nonce = newNonce();
    const tampered = tamperedGuestImage();
    const vmId = await dom0Builds('vm-g1-leak', tampered, nonce);
    const cap = hostileDom0(c).capability;
    await eventually('the refusal', () => cap.vm(vmId).attestation.state === 'refused');
    assert.equal(cap.vm(vmId).attestation.reason, 'KERNEL_NOT_ALLOWED');
    assert.equal(cap.vm(vmId).kernelDigest, sha256Digest(tampered));
    // The attack "worked" inside the node (dom0 read the private key from the console) …
    await eventually('the leak', () => (c.node.backend.console(vmId) ?? '').includes('LEAKED'));
    // … and bought nothing: the CA's signed answer is "no", with no certificate for that key.
    const receipt = await userFetchesReceipt(c, nonce);
    assert.equal(receipt?.['ear.status'], 'contraindicated');
    assert.equal(receipt?.reason?.code, 'KERNEL_NOT_ALLOWED');
    assert.equal((await c.ca.client.receipt(nonce)).hostCertificate, undefined);
    assert.equal(await userAccepts(c, nonce), false);
    assert.equal((await caDecisions(c)).some((d) => d.nonce === nonce && d.outcome === 'affirming'), false);
  });

  void it('dom0 answering the user\'s SSH connection with its own key: the user\'s client refuses it', async () => {
    const c = cluster();
    const vm = await createVm(c, { vmId: 'vm-g1-ssh' });
    const done = await waitForAttestation(c, vm.vmId);
    assert.equal(done.attestation.state, 'attested');
    const claims = await userFetchesReceipt(c, vm.nonce);
    const identity = await c.ca.client.keys();
    const mitm = await startSshd();
    try {
      // dom0 reports its own sshd as the VM's endpoint; the user trusts only the CA's key, or the receipt's host key.
      for (const knownHosts of [`@cert-authority ${vm.hostname} ${identity.sshCaKey}\n`, `${vm.hostname} ${claims?.ssh_host_key}\n`]) {
        const r = await mitm.ssh({ knownHosts, hostKeyAlias: vm.hostname, command: 'echo fooled' });
        assert.equal(r.status, 255, 'the user logged into dom0\'s server');
        assert.match(r.stderr, /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known/);
      }
      // The real VM passes the same checks.
      let real = await ssh({ port: done.ssh?.port as number, key: c.key, knownHosts: `${vm.hostname} ${claims?.ssh_host_key}\n`, hostKeyAlias: vm.hostname, command: 'echo real' });
      assert.equal(real.status, 0, real.stderr);
      real = await ssh({ port: done.ssh?.port as number, key: c.key, knownHosts: `@cert-authority ${vm.hostname} ${identity.sshCaKey}\n`, hostKeyAlias: vm.hostname, command: 'echo real' });
      assert.equal(real.status, 0, real.stderr);
    } finally {
      await mitm.stop();
    }
  });

  void it('a recorded evidence rewritten (nonce or host key): the CA refuses; no receipt for either', async () => {
    const c = cluster();
    const eventLog = c.node.hypervisor.eventLog();
    await c.stopNode();
    const claims = { nodeId: 'node-1', vmId: 'vm-g1-wire', nonce: newNonce(), hostname: 'vm-g1-wire.trustlaunch.test', kernel: c.guestDigest, sshHostKey: formatSshPublicKey(generateKeyPair('ed25519').publicKey), time: Math.floor(Date.now() / 1000) };
    const genuine = await recordedEvidence(c, eventLog, claims);
    const dom0Key = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
    const otherNonce = newNonce();
    for (const change of [{ sshHostKey: dom0Key }, { nonce: otherNonce }]) {
      await assert.rejects(c.ca.client.evidence({ ...genuine, claims: { ...genuine.claims, ...change } }), (e) => isTrustlaunchError(e, 'QUALIFYING_DATA_MISMATCH'), JSON.stringify(change));
    }
    // Whatever the CA answers for either nonce is a signed "no" (reason: the quote does not cover the claims).
    for (const nonce of [otherNonce, claims.nonce]) {
      const r = await userFetchesReceipt(c, nonce);
      if (r !== undefined) assert.deepEqual([r['ear.status'], r.reason?.code], ['contraindicated', 'QUALIFYING_DATA_MISMATCH']);
      assert.equal(await userAccepts(c, nonce), false);
    }
    assert.equal((await caDecisions(c)).filter((d) => d.outcome === 'affirming' && (d.nonce === otherNonce || d.nonce === claims.nonce)).length, 0);
    await c.restartNode();
  });
});
