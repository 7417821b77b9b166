// Multi-part VM images (the QEMU backend's bundles): kernel, initramfs and command line are
// each copied into VM memory and each copy hashed; what the runner gets are views of those
// copies with their digests; the report and the mini-domain's launch claims name all three.
// And the hypervisor's side of a runner's trouble: a VM destroyed while its runner was
// starting it is stopped (never stored), and a runner's refusal keeps its code.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { TrustlaunchError } from '../../../src/protocol/errors.js';
import { newNonce } from '../../../src/protocol/nonce.js';
import { LaunchClaimsSchema } from '../../../src/protocol/messages.js';
import { launchClaims } from '../../../src/node/minidomain/evidence.js';
import { nodeWithMiniDomain, sshKey } from '../../support/hypervisor-vms.js';


const MiB = 1024 * 1024;

void describe('multi-part images', () => {
  void it('hashes each copied part; later changes to dom0\'s buffers change neither digests nor the bytes the runner gets', async () => {
    const { t, mini, boots } = await nodeWithMiniDomain();
    const kernel = randomBytes(3 * MiB + 17);
    const initrd = randomBytes(2 * MiB + 4095);
    const cmdline = Buffer.from('console=ttyS0 quiet panic=-1');
    const originals = { kernel: Buffer.from(kernel), initrd: Buffer.from(initrd), cmdline: Buffer.from(cmdline) };
    const pending = t.node.dom0.buildVm({ name: 'vm-b', image: { kernel, initrd, cmdline }, memoryBytes: 64 * MiB, launch: { nonce: newNonce(), hostname: 'vm-b.test' } });
    // dom0 changes its buffers right after handing them over, while the hypervisor hashes.
    kernel.fill(1);
    initrd.fill(2);
    cmdline.write('init=/bin/sh   ');
    const info = await pending;
    const expected = { kernel: sha256Digest(originals.kernel), initrd: sha256Digest(originals.initrd), cmdline: sha256Digest(originals.cmdline) };
    assert.deepEqual(info.measurements, expected);
    assert.equal(info.kernelDigest, expected.kernel);
    assert.equal(info.imageBytes, originals.kernel.length + originals.initrd.length + originals.cmdline.length);

    await t.node.dom0.startVm(info.vmId);
    const boot = boots[0];
    assert.ok(boot);
    assert.deepEqual(Buffer.from(boot.image), originals.kernel);
    assert.deepEqual(Buffer.from(boot.initrd?.bytes ?? []), originals.initrd);
    assert.deepEqual(Buffer.from(boot.cmdline?.bytes ?? []), originals.cmdline);
    assert.deepEqual([boot.kernelDigest, boot.initrd?.digest, boot.cmdline?.digest], [expected.kernel, expected.initrd, expected.cmdline]);

    // The report and the claims the mini-domain signs name all three.
    const key = sshKey();
    boot.capability.channel.send({ v: 1, type: 'host-key', key });
    const report = await mini.waitForVmReport(info.vmId, 5000);
    assert.deepEqual(report.measurements, expected);
    const claims = LaunchClaimsSchema.parse(launchClaims('node-1', report, new Date()));
    assert.deepEqual([claims.kernel, claims.initrd, claims.cmdline, claims.sshHostKey], [expected.kernel, expected.initrd, expected.cmdline, key]);
    await t.node.shutdown();
  });

  void it('transfers nothing it does not copy: ArrayBuffer parts are detached from dom0 after the copy', async () => {
    const { t, boots } = await nodeWithMiniDomain();
    const kernel = new Uint8Array(randomBytes(5000)).buffer;
    const initrd = new Uint8Array(randomBytes(9000)).buffer;
    const expected = { kernel: sha256Digest(new Uint8Array(kernel)), initrd: sha256Digest(new Uint8Array(initrd)) };
    const info = await t.node.dom0.buildVm({ name: 'vm-t', image: { kernel, initrd }, memoryBytes: 64 * MiB });
    assert.equal(kernel.byteLength, 0, 'the kernel buffer left dom0');
    assert.equal(initrd.byteLength, 0, 'the initrd buffer left dom0');
    assert.deepEqual(info.measurements, expected, 'a bundle without a command line measures none');
    await t.node.dom0.startVm(info.vmId);
    assert.equal(boots[0]?.cmdline, undefined);
    assert.equal(sha256Digest(boots[0]?.initrd?.bytes ?? new Uint8Array()), expected.initrd);
    await t.node.shutdown();
  });

  void it('refuses malformed bundles before building anything', async () => {
    const { t } = await nodeWithMiniDomain();
    const k = randomBytes(100);
    const bad: Array<[unknown, 'MALFORMED_REQUEST' | 'BODY_TOO_LARGE']> = [
      [{ initrd: k }, 'MALFORMED_REQUEST'],
      [{ kernel: k, extra: k }, 'MALFORMED_REQUEST'],
      [{ kernel: 'not bytes' }, 'MALFORMED_REQUEST'],
      [{ kernel: k, initrd: [1, 2, 3] }, 'MALFORMED_REQUEST'],
      [{ kernel: new Uint8Array(0) }, 'BODY_TOO_LARGE'],
      [{ kernel: k, cmdline: Buffer.alloc(4097, 0x61) }, 'BODY_TOO_LARGE'],
    ];
    for (const [image, code] of bad) {
      await assert.rejects(t.node.dom0.buildVm({ name: 'vm-bad', image: image as Uint8Array, memoryBytes: 64 * MiB }), (e) => isTrustlaunchError(e, code), JSON.stringify(Object.keys(image as object)));
    }
    await assert.rejects(t.node.dom0.buildVm({ name: 'vm-bad', image: 42 as unknown as Uint8Array }), TypeError);
    // A getter cannot show the checks one value and the copy another: each part is read once.
    let reads = 0;
    const sneaky = {
      get kernel() {
        reads++;
        return reads === 1 ? randomBytes(10) : randomBytes(600 * MiB);
      },
    };
    const info = await t.node.dom0.buildVm({ name: 'vm-once', image: sneaky, memoryBytes: 64 * MiB });
    assert.equal(reads, 1);
    assert.equal(info.imageBytes, 10);
    assert.deepEqual(t.node.dom0.vms().map((v) => v.name), ['vm-once'], 'nothing else was built');
    await t.node.shutdown();
  });
});

void describe('runner trouble', () => {
  void it('a VM destroyed while its runner starts it is stopped, not kept running', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let stopped = 0;
    const { t } = await nodeWithMiniDomain(async () => {
      await gate;
      return { stop: () => ((stopped += 1), Promise.resolve()) };
    });
    const info = await t.node.dom0.buildVm({ name: 'vm-race', image: randomBytes(64) });
    const starting = t.node.dom0.startVm(info.vmId);
    await t.node.dom0.destroyVm(info.vmId);
    release();
    await assert.rejects(starting, (e) => isTrustlaunchError(e, 'DOMAIN_STATE_INVALID'));
    assert.equal(stopped, 1, "the runner's execution was stopped");
    assert.equal(t.node.dom0.vm(info.vmId).state, 'destroyed');
    await t.node.shutdown();
    assert.equal(stopped, 1, 'and not stopped again at shutdown (it was never stored)');
  });

  void it("a runner's refusal keeps its code (no capacity, a malformed request, unsupported); a boot that went wrong is VM_BOOT_FAILED", async () => {
    const codes = ['CAPACITY_EXCEEDED', 'MALFORMED_REQUEST', 'UNSUPPORTED', 'INTERNAL'] as const;
    let next = 0;
    const { t } = await nodeWithMiniDomain(() => Promise.reject(codes[next] === 'INTERNAL' ? new Error('qemu: could not load kernel') : new TrustlaunchError(codes[next] as 'UNSUPPORTED', 'refused')));
    for (const [i, code] of codes.entries()) {
      next = i;
      const info = await t.node.dom0.buildVm({ name: `vm-r${i}`, image: randomBytes(64) });
      const expected = code === 'INTERNAL' ? 'VM_BOOT_FAILED' : code;
      await assert.rejects(t.node.dom0.startVm(info.vmId), (e) => isTrustlaunchError(e, expected));
      assert.equal(t.node.dom0.vm(info.vmId).state, 'destroyed');
    }
    await t.node.shutdown();
  });
});
