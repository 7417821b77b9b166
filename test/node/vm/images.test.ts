// Process-VM images: padded variants (the benchmark's 16 MiB image) boot like the default
// and measure differently; the tampered variant attack tests use really leaks the private
// host key to the console dom0 reads — only its digest gives it away.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { defaultGuestImage, padGuestImage } from '../../../src/node/vm/process/index.js';
import { requireCommand, tempDir } from '../../support/system.js';
import { bootProcessNodeWithKey, closeProcessNode, run, ssh, tamperedGuestImage, type ClientKey, type ProcessNode } from './support.js';

const MIB = 1024 * 1024;

void describe('process-VM images', () => {
  let pn: ProcessNode;
  let key: ClientKey;
  before(async () => ({ pn, key } = await bootProcessNodeWithKey()));
  after(() => closeProcessNode(pn, key));

  void it('pads to an exact size; labels give distinct digests; bad sizes and labels are refused', () => {
    const image = defaultGuestImage();
    const a = padGuestImage(image, 64 * 1024);
    assert.equal(a.length, 64 * 1024);
    assert.deepEqual(a.subarray(0, image.length), image);
    assert.equal(padGuestImage(image, 64 * 1024).equals(a), true, 'deterministic');
    assert.notEqual(sha256Digest(padGuestImage(image, 64 * 1024, 'run-2')), sha256Digest(a));
    assert.throws(() => padGuestImage(image, image.length + 5), RangeError);
    assert.throws(() => padGuestImage(image, 64 * 1024, 'x*/y'), TypeError);
    assert.throws(() => padGuestImage(image, 64 * 1024, 'two\nlines'), TypeError);
  });

  void it('a 16 MiB padded image boots, serves ssh, and is measured as itself', async () => {
    const image = padGuestImage(defaultGuestImage(), 16 * MIB, 'bench');
    const info = await pn.node.dom0.buildVm({ name: 'padded', image, guest: { hostname: 'padded.test', authorizedKeys: [key.publicKey] } });
    assert.equal(info.kernelDigest, sha256Digest(image));
    assert.equal(info.imageBytes, 16 * MIB);
    await pn.node.dom0.startVm(info.vmId);
    const report = await pn.mini.waitForVmReport(info.vmId, 20_000);
    await pn.backend.waitForGuest(info.vmId, 'ready', 20_000);
    const port = pn.backend.endpoint(info.vmId)?.sshPort as number;
    const r = await ssh({ port, key, knownHosts: `[127.0.0.1]:${port} ${report.sshHostKey}\n`, command: 'echo padded' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'padded');
    await pn.node.dom0.destroyVm(info.vmId);
  });

  void it('the tampered image leaks the private host key to the console; its digest differs', async () => {
    const image = tamperedGuestImage();
    const info = await pn.node.dom0.buildVm({ name: 'tampered', image, guest: { hostname: 'tampered.test', authorizedKeys: [key.publicKey] } });
    assert.notEqual(info.kernelDigest, sha256Digest(defaultGuestImage()));
    await pn.node.dom0.startVm(info.vmId);
    const report = await pn.mini.waitForVmReport(info.vmId, 20_000);
    const deadline = Date.now() + 10_000;
    while (!/END OPENSSH PRIVATE KEY/.test(pn.backend.console(info.vmId) ?? '') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const leaked = /LEAKED (-----BEGIN OPENSSH PRIVATE KEY-----[\s\S]*?-----END OPENSSH PRIVATE KEY-----)/.exec(pn.backend.console(info.vmId) ?? '')?.[1];
    assert.ok(leaked, 'the private key is on the console');
    // It is the private half of the key the guest reported: whoever reads the console can impersonate the VM.
    const tmp = tempDir('tl-leak-');
    try {
      writeFileSync(join(tmp.path, 'k'), `${leaked}\n`, { mode: 0o600 });
      const pub = await run(requireCommand('ssh-keygen'), ['-y', '-f', join(tmp.path, 'k')]);
      assert.equal(pub.status, 0, pub.stderr);
      assert.equal(pub.stdout.trim().split(' ').slice(0, 2).join(' '), report.sshHostKey);
    } finally {
      tmp.dispose();
    }
    await pn.node.dom0.destroyVm(info.vmId);
  });
});
