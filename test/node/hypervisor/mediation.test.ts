// Device mediation (claims 1, 10, 12; G3): the mini-domain reaches the auth device only
// through MMIO under its grant and DMA through its own I/O page table; dom0 reaches it
// by no path, every attempt is recorded, and the device sees nothing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { PCR, PLATFORM_PCRS } from '../../../src/protocol/pcrs.js';
import { FAULT_REASON, type MiniDomainCapability } from '../../../src/node/hypervisor/index.js';
import { AUTH_DEVICE_TPM } from '../../../src/node/hypervisor/pci.js';
import { bootTestNode, tpmOf } from './node-fixture.js';

const AUTH_BASE = AUTH_DEVICE_TPM.bars[0]?.base ?? 0;
const CTRL_START = 0x4c;
const NV = 0x01500099;

async function launched(limits: { faultThreshold?: number } = {}): Promise<{ t: Awaited<ReturnType<typeof bootTestNode>>; cap: MiniDomainCapability }> {
  const caps: MiniDomainCapability[] = [];
  const t = await bootTestNode({ limits, miniDomain: ({ capability }) => (caps.push(capability), { stop: () => Promise.resolve() }) });
  await t.node.dom0.launchMiniDomain(t.image);
  const cap = caps[0];
  assert.ok(cap);
  return { t, cap };
}

void describe('mediated auth device', () => {
  void it('serves the AuthDevice interface to the mini-domain, keeping error codes', async () => {
    const { t, cap } = await launched();
    const ak = await tpmOf(cap).ensureAttestationKey('ecc-p256');
    assert.equal(ak.handle >>> 24, 0x81);
    const ek = await tpmOf(cap).endorsements();
    assert.equal(ek[0]?.algorithm, 'ecc-p256');
    assert.ok(ek[0]?.certificate instanceof Uint8Array && ek[0].certificate.length > 100);
    await tpmOf(cap).nvDefine(NV, { size: 64 });
    const data = randomBytes(40);
    await tpmOf(cap).nvWrite(NV, data);
    assert.deepEqual(Buffer.from(await tpmOf(cap).nvRead(NV)).subarray(0, 40), data);
    assert.equal(await tpmOf(cap).nvSize(0x01500098), undefined);
    await assert.rejects(tpmOf(cap).nvRead(0x01500098), (e) => isTrustlaunchError(e, 'NV_INDEX_UNDEFINED'));
    // Parallel calls are serialised onto the one mailbox and all complete correctly.
    const quotes = await Promise.all(Array.from({ length: 8 }, (_, i) => tpmOf(cap).quote(ak, PLATFORM_PCRS, Buffer.alloc(32, i))));
    assert.equal(new Set(quotes.map((q) => Buffer.from(q.attest).toString('hex'))).size, 8);
    // The device really is the one the test holds: both see the same NV contents.
    assert.deepEqual(Buffer.from(await t.device.nvRead(NV)).subarray(0, 40), data);
    await t.node.shutdown();
  });

  void it('refuses powerOff and extends of the hypervisor-measured PCRs, recording each', async () => {
    const { t, cap } = await launched();
    const before = await t.device.pcrRead(PLATFORM_PCRS);
    await assert.rejects(tpmOf(cap).powerOff(), (e) => isTrustlaunchError(e, 'CAPABILITY_DENIED'));
    for (const pcr of PLATFORM_PCRS) await assert.rejects(tpmOf(cap).pcrExtend(pcr, randomBytes(32)), (e) => isTrustlaunchError(e, 'CAPABILITY_DENIED'));
    assert.deepEqual(await t.device.pcrRead(PLATFORM_PCRS), before);
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'CAPABILITY_DENIED').length, 1 + PLATFORM_PCRS.length);
    await tpmOf(cap).pcrExtend(16, randomBytes(32)); // the debug PCR is the mini-domain's to use
    await t.node.shutdown();
  });

  void it("dom0's MMIO to the device is denied, recorded, and changes nothing (G3)", async () => {
    const { t, cap } = await launched();
    const pcrs = await t.device.pcrRead([...PLATFORM_PCRS, 16]);
    const before = t.node.snapshot(true);
    const attempts = [
      { address: AUTH_BASE + CTRL_START, size: 4, kind: 'write', value: 1 },
      { address: AUTH_BASE + 0x58, size: 4, kind: 'write', value: 64 },
      { address: AUTH_BASE + 0x44, size: 4, kind: 'read' },
      { address: AUTH_BASE + 0x80, size: 1, kind: 'read' },
    ] as const;
    for (const access of attempts) assert.throws(() => t.node.dom0.mmio(access), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    assert.deepEqual(t.node.snapshot(true), before, 'the device or the tables changed');
    assert.deepEqual(await t.device.pcrRead([...PLATFORM_PCRS, 16]), pcrs);
    const denied = t.node.securityEvents().filter((e) => e.kind === 'MMIO_DENIED');
    assert.equal(denied.length, attempts.length);
    assert.ok(denied.every((e) => e.domain === 0 && e.detail['bdf'] === '00:1f.0'));
    // The mini-domain still reaches it.
    await tpmOf(cap).pcrRead([0]);
    await t.node.shutdown();
  });

  void it('dom0 can neither program the device for DMA nor reach mini-domain memory with its own devices', async () => {
    const { t, cap } = await launched({ faultThreshold: 1_000_000 });
    assert.throws(() => t.node.dom0.dma('00:1f.0', { address: 0, kind: 'read', length: 16 }), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    cap.memory.write(0, Buffer.from('mini-domain secret'));
    const before = t.node.snapshot(true);
    // dom0 aims its NIC at every page address of host memory (its own identity-mapped
    // pages 0..1023 included): only dom0's frames may change, everything else faults.
    const dom0Pages = t.node.dom0.memory.size / 4096;
    const faults: number[] = [];
    for (let page = 0; page < dom0Pages + 4096; page += 3) {
      const r = t.node.dom0.dma('00:03.0', { address: page * 4096, kind: 'write', data: Buffer.from('overwrite') });
      if (r.ok) assert.ok(page < dom0Pages, `DMA to page ${page} succeeded`);
      else if ('fault' in r) faults.push(r.fault.fr);
    }
    assert.ok(faults.length > 1000 && faults.every((fr) => fr === FAULT_REASON.PTE_WRITE_NOT_SET));
    assert.equal(Buffer.from(cap.memory.read(0, 18)).toString(), 'mini-domain secret');
    const after = t.node.snapshot(true);
    const old = new Map(before.frames.map(([h, d, c]) => [h, { d, c }]));
    for (const [h, d, c] of after.frames) if (old.get(h)?.c !== c) assert.equal(d, 0, `frame ${h} of domain ${d} changed`);
    assert.deepEqual(after.iommu.pageTables, before.iommu.pageTables);
    assert.equal(t.node.status().faults.total, faults.length);
    assert.ok(t.node.securityEvents().some((e) => e.kind === 'IOMMU_FAULT' && e.domain === 0));
    await t.node.shutdown();
  });

  void it('survives the mini-domain programming its own device with nonsense through raw MMIO', async () => {
    const { t, cap } = await launched();
    const reg = (offset: number, value: number): void => void cap.mmio({ address: AUTH_BASE + offset, size: 4, kind: 'write', value });
    for (const [cmd, size] of [[0xffffffff, 64], [0, 0], [0, 0xffffffff], [0x1000, 16]] as const) {
      reg(0x60, cmd); // CTRL_CMD_HADDR: far beyond any address width
      reg(0x58, size);
      reg(CTRL_START, 1);
      for (let i = 0; i < 100 && cap.mmio({ address: AUTH_BASE + CTRL_START, size: 4, kind: 'read' }) !== 0; i++) await new Promise((r) => setImmediate(r));
      assert.equal(cap.mmio({ address: AUTH_BASE + 0x44, size: 4, kind: 'read' }) & 1, 1, 'tpmSts (fatal) not set');
    }
    // The handle reprograms every register, so the next real call works.
    assert.equal((await tpmOf(cap).pcrRead([0])).size, 1);
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it("a dom0 device hitting the fault threshold loses bus mastering", async () => {
    const t = await bootTestNode({ limits: { faultThreshold: 4 } });
    for (let i = 0; i < 4; i++) assert.equal(t.node.dom0.dma('00:02.0', { address: 2 ** 40, kind: 'read', length: 1 }).ok, false);
    assert.deepEqual(t.node.dom0.dma('00:02.0', { address: 0, kind: 'read', length: 1 }), { ok: false, blocked: 'bus-master-disabled' });
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'BUS_MASTER_DISABLED').length, 1);
    assert.equal(t.node.dom0.dma('00:03.0', { address: 0, kind: 'read', length: 1 }).ok, true);
    await t.node.shutdown();
  });

  void it("the device's DMA goes through the mini-domain's own page table: unmapping its buffer faults the call", async () => {
    const { t, cap } = await launched();
    const ak = await tpmOf(cap).ensureAttestationKey('ecc-p256');
    // Find the response buffer: the mailbox sits after the image, command then response (64 KiB each).
    const imagePages = Math.ceil(t.image.length / 4096);
    const responsePfn = imagePages + 16;
    cap.iommu.unmap(responsePfn);
    await assert.rejects(tpmOf(cap).quote(ak, [PCR.MINIDOMAIN], Buffer.alloc(32)), (e) => isTrustlaunchError(e, 'IOMMU_FAULT'));
    const fault = t.node.faultRecords().at(-1);
    assert.deepEqual(fault, { sid: 0x00f8, fi: responsePfn * 4096, fr: FAULT_REASON.PTE_WRITE_NOT_SET, t: 0 });
    cap.iommu.map(responsePfn, responsePfn, { r: true, w: true });
    await tpmOf(cap).quote(ak, [PCR.MINIDOMAIN], Buffer.alloc(32));
    // And it can only map its own pages.
    assert.throws(() => cap.iommu.map(responsePfn, 10 ** 6, { r: true, w: true }), (e) => isTrustlaunchError(e, 'IOMMU_MAP_DENIED'));
    t.node.checkInvariants();
    await t.node.shutdown();
  });
});
