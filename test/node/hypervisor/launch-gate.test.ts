// The launch gate (claims 4, 8, 10; G2, G6): the copy is hashed, not dom0's buffer; a
// tampered image never runs and never reaches the device; a restart passes the gate again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { PCR } from '../../../src/protocol/pcrs.js';
import { DOMID_IO, type MiniDomainCapability, type MiniDomainEntry } from '../../../src/node/hypervisor/index.js';
import { replay } from '../../../src/tpm/eventlog/replay.js';
import { bootTestNode, tpmOf } from './node-fixture.js';

function recorder(): { entry: MiniDomainEntry; caps: MiniDomainCapability[]; images: Uint8Array[] } {
  const caps: MiniDomainCapability[] = [];
  const images: Uint8Array[] = [];
  return {
    caps,
    images,
    entry: ({ capability, image }) => {
      caps.push(capability);
      images.push(image);
      return { stop: () => Promise.resolve() };
    },
  };
}

function authOwner(t: Awaited<ReturnType<typeof bootTestNode>>): number {
  return t.node.status().authDevice.owner;
}

void describe('launch gate', () => {
  void it('launches the image the policy names: PCR 12 measured, device assigned, domain started', async () => {
    const rec = recorder();
    const t = await bootTestNode({ miniDomain: rec.entry });
    const launch = await t.node.dom0.launchMiniDomain(t.image);
    assert.deepEqual({ digest: launch.digest, launch: launch.launch }, { digest: t.digest, launch: 1 });
    assert.equal(authOwner(t), launch.domainId);
    assert.equal(t.node.dom0.miniDomain().state, 'running');
    assert.equal(rec.caps.length, 1);
    assert.deepEqual(Buffer.from(rec.images[0] ?? []), Buffer.from(t.image));
    const log = t.node.eventLog();
    const last = log.at(-1);
    assert.equal(last?.pcrIndex, PCR.MINIDOMAIN);
    assert.equal(last.digests[0]?.digest.toString('hex'), t.digest.slice(7));
    // The device's PCR 12, read through the mini-domain's own mediated handle, replays from the log.
    const pcrs = await tpmOf(rec.caps[0]).pcrRead([PCR.MINIDOMAIN]);
    assert.deepEqual(Buffer.from(pcrs?.get(PCR.MINIDOMAIN) ?? []), replay(log)[PCR.MINIDOMAIN]);
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'MINIDOMAIN_LAUNCHED').length, 1);
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it('refuses a tampered image: never started, device stays quarantined, PCR 12 untouched, event recorded (G2)', async () => {
    const rec = recorder();
    const t = await bootTestNode({ miniDomain: rec.entry });
    const before = t.node.snapshot(true);
    const logBefore = t.node.eventLog().length;
    const tampered = Buffer.from(t.image);
    tampered[100] = (tampered[100] as number) ^ 1;
    await assert.rejects(t.node.dom0.launchMiniDomain(tampered), (e) => isTrustlaunchError(e, 'LAUNCH_DIGEST_MISMATCH') && e.message.includes(sha256Digest(tampered)));
    assert.equal(rec.caps.length, 0, 'the tampered image ran');
    assert.equal(authOwner(t), DOMID_IO);
    assert.equal(t.node.dom0.miniDomain().state, 'absent');
    assert.equal(t.node.eventLog().length, logBefore);
    assert.deepEqual((await t.device.pcrRead([PCR.MINIDOMAIN])).get(PCR.MINIDOMAIN), Buffer.alloc(32));
    assert.deepEqual(t.node.snapshot(true), before, 'a refused launch left something behind');
    const ev = t.node.securityEvents().filter((e) => e.kind === 'LAUNCH_DIGEST_MISMATCH');
    assert.equal(ev.length, 1);
    assert.deepEqual(ev[0]?.detail, { expected: t.digest, actual: sha256Digest(tampered) });
    t.node.checkInvariants();
    // The right image still launches afterwards.
    await t.node.dom0.launchMiniDomain(t.image);
    assert.equal(rec.caps.length, 1);
    await t.node.shutdown();
  });

  void it("hashes the copy: changing dom0's buffer after hand-over or during the hash changes nothing", async () => {
    const big = randomBytes(3 * 1024 * 1024 + 17); // several hash chunks
    for (const when of ['after-hand-over', 'during-hash'] as const) {
      const rec = recorder();
      const mutable = Buffer.from(big);
      let chunks = 0;
      const t = await bootTestNode({
        image: big,
        miniDomain: rec.entry,
        trace: (step) => {
          if (step === 'hash-chunk' && when === 'during-hash') {
            chunks++;
            mutable.fill(chunks); // dom0 rewrites its buffer while the gate hashes
          }
        },
      });
      const pending = t.node.dom0.launchMiniDomain(mutable);
      if (when === 'after-hand-over') mutable.fill(0xee);
      const launch = await pending;
      assert.equal(launch.digest, t.digest, when);
      if (when === 'during-hash') assert.ok(chunks >= 4, `the hash ran in ${chunks} chunks`);
      // What runs is the original image, byte for byte, in the mini-domain's memory.
      const cap = rec.caps[0];
      assert.ok(cap);
      assert.equal(sha256Digest(cap.memory.read(0, big.length)), t.digest);
      assert.deepEqual(Buffer.from(rec.images[0] ?? []), big);
      await t.node.shutdown();
    }
  });

  void it('cannot be fooled by fixing a tampered buffer during the hash', async () => {
    const rec = recorder();
    const swap: { handed?: Buffer; good?: Uint8Array } = {};
    const t = await bootTestNode({
      miniDomain: rec.entry,
      trace: (step) => {
        if (step === 'hash-chunk' && swap.handed !== undefined && swap.good !== undefined) swap.handed.set(swap.good);
      },
    });
    const handed = Buffer.from(t.image);
    handed[0] = (handed[0] as number) ^ 0xff;
    swap.handed = handed;
    swap.good = t.image;
    await assert.rejects(t.node.dom0.launchMiniDomain(handed), (e) => isTrustlaunchError(e, 'LAUNCH_DIGEST_MISMATCH'));
    assert.deepEqual(Buffer.from(handed), Buffer.from(t.image), 'the buffer was fixed during the hash');
    assert.equal(rec.caps.length, 0);
    assert.equal(authOwner(t), DOMID_IO);
    await t.node.shutdown();
  });

  void it('what runs is what was measured even while another thread rewrites the shared buffer', async () => {
    const image = randomBytes(256 * 1024);
    for (let round = 0; round < 4; round++) {
      const rec = recorder();
      const t = await bootTestNode({ image, miniDomain: rec.entry });
      const shared = new Uint8Array(new SharedArrayBuffer(image.length + 4));
      shared.set(image);
      const stop = new Int32Array(shared.buffer, image.length, 1);
      // The worker flips byte `round * 1000` back and forth until told to stop (bounded by a deadline).
      const worker = new Worker(
        `const { workerData } = require('node:worker_threads');
         const bytes = new Uint8Array(workerData.buffer, 0, workerData.length);
         const stop = new Int32Array(workerData.buffer, workerData.length, 1);
         const at = workerData.at; const orig = bytes[at]; const deadline = Date.now() + 5000;
         while (Atomics.load(stop, 0) === 0 && Date.now() < deadline) { bytes[at] = orig ^ 0x5a; bytes[at] = orig; }`,
        { eval: true, workerData: { buffer: shared.buffer, length: image.length, at: round * 1000 } },
      );
      await new Promise((r) => setTimeout(r, 20));
      const outcome = await t.node.dom0.launchMiniDomain(shared.subarray(0, image.length)).then(
        (l) => l,
        (e: unknown) => e,
      );
      Atomics.store(stop, 0, 1);
      await worker.terminate();
      if (isTrustlaunchError(outcome, 'LAUNCH_DIGEST_MISMATCH')) {
        assert.equal(rec.caps.length, 0);
        assert.equal(authOwner(t), DOMID_IO);
      } else {
        const cap = rec.caps[0];
        assert.ok(cap, `unexpected outcome ${String(outcome)}`);
        assert.equal(sha256Digest(cap.memory.read(0, image.length)), t.digest, 'the bytes in the mini-domain differ from the measured ones');
      }
      t.node.checkInvariants();
      await t.node.shutdown();
    }
  });

  void it('refuses a second launch while one runs, and oversized images, changing nothing', async () => {
    const t = await bootTestNode({ limits: { maxMiniDomainImageBytes: 64 * 1024 } });
    await t.node.dom0.launchMiniDomain(t.image);
    const before = t.node.snapshot(true);
    await assert.rejects(t.node.dom0.launchMiniDomain(t.image), (e) => isTrustlaunchError(e, 'DOMAIN_STATE_INVALID'));
    assert.deepEqual(t.node.snapshot(true), before);
    await t.node.dom0.stopMiniDomain();
    assert.equal(authOwner(t), DOMID_IO);
    const stopped = t.node.snapshot(true);
    await assert.rejects(t.node.dom0.launchMiniDomain(new Uint8Array(64 * 1024 + 1)), (e) => isTrustlaunchError(e, 'BODY_TOO_LARGE'));
    assert.deepEqual(t.node.snapshot(true), stopped);
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it('a crashed mini-domain loses the device at once; VMs keep running; the restart passes the gate again (G6)', async () => {
    const rec = recorder();
    const t = await bootTestNode({ miniDomain: rec.entry });
    const first = await t.node.dom0.launchMiniDomain(t.image);
    const vmImage = randomBytes(10_000);
    const vm = await t.node.dom0.buildVm({ name: 'vm-a', image: vmImage });
    await t.node.dom0.startVm(vm.vmId);
    const oldHandle = tpmOf(rec.caps[0]);
    assert.ok(oldHandle);
    await oldHandle.ensureAttestationKey('ecc-p256');

    await t.node.reportMiniDomainCrash('agent threw');
    assert.equal(authOwner(t), DOMID_IO, 'the device was not quarantined on crash');
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'MINIDOMAIN_CRASHED').length, 1);
    assert.equal(t.node.dom0.vm(vm.vmId).state, 'running');
    assert.equal(t.node.dom0.vm(vm.vmId).kernelDigest, sha256Digest(vmImage));
    await assert.rejects(oldHandle.pcrRead([0]), (e) => isTrustlaunchError(e, 'DOMAIN_STATE_INVALID'));
    t.node.checkInvariants();

    // A tampered restart is refused and the device stays in quarantine.
    const tampered = Buffer.from(t.image);
    tampered[5] = (tampered[5] as number) ^ 2;
    await assert.rejects(t.node.dom0.launchMiniDomain(tampered), (e) => isTrustlaunchError(e, 'LAUNCH_DIGEST_MISMATCH'));
    assert.equal(authOwner(t), DOMID_IO);

    const second = await t.node.dom0.launchMiniDomain(t.image);
    assert.equal(second.launch, 2);
    assert.notEqual(second.domainId, first.domainId);
    assert.equal(authOwner(t), second.domainId);
    const launches = t.node.eventLog().filter((e) => e.pcrIndex === PCR.MINIDOMAIN);
    assert.equal(launches.length, 2);
    // The old handle stays dead even though a mini-domain holds the device again.
    await assert.rejects(oldHandle.pcrRead([0]), (e) => isTrustlaunchError(e, 'DOMAIN_STATE_INVALID'));
    const fresh = tpmOf(rec.caps[1]);
    assert.ok(fresh);
    const pcr12 = (await fresh.pcrRead([PCR.MINIDOMAIN])).get(PCR.MINIDOMAIN);
    assert.deepEqual(Buffer.from(pcr12 ?? []), replay(t.node.eventLog())[PCR.MINIDOMAIN]);
    assert.equal(t.node.dom0.vm(vm.vmId).state, 'running');
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it("treats the entry's exit as a crash", async () => {
    let exit: (e: Error) => void = () => undefined;
    const t = await bootTestNode({
      miniDomain: () => ({ stop: () => Promise.resolve(), exited: new Promise((_, reject) => (exit = reject)) }),
    });
    const launch = await t.node.dom0.launchMiniDomain(t.image);
    assert.equal(authOwner(t), launch.domainId);
    exit(new Error('segfault'));
    await new Promise((r) => setImmediate(r));
    assert.equal(authOwner(t), DOMID_IO);
    assert.equal(t.node.dom0.miniDomain().state, 'absent');
    const crash = t.node.securityEvents().find((e) => e.kind === 'MINIDOMAIN_CRASHED');
    assert.equal(crash?.detail['reason'], 'segfault');
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it("a failing entry destroys the domain and quarantines the device", async () => {
    const t = await bootTestNode({ miniDomain: () => Promise.reject(new Error('bad image format')) });
    await assert.rejects(t.node.dom0.launchMiniDomain(t.image), /bad image format/);
    assert.equal(authOwner(t), DOMID_IO);
    assert.equal(t.node.dom0.miniDomain().state, 'absent');
    t.node.checkInvariants();
    await t.node.shutdown();
  });
});

