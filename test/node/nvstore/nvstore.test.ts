// The pci-nvstore backend end to end (claim 2): the device stores blocks and nothing
// else; the mini-domain's driver reaches it only through its MMIO grant and DMA into its
// own window; the TPM engine runs in the mini-domain with its state on the device and
// the platform PCRs kept by the hypervisor. Its quotes verify (verifyQuote + event-log
// replay), its EK certificate chains to the manufacturer, its keys survive reboots, and
// dom0 reaches the device by no path (G3): refused, recorded, medium unchanged.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { parseCertificate, verifyChain } from '../../../src/crypto/x509.js';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { toBase64url } from '../../../src/protocol/base64url.js';
import { PCR, PLATFORM_PCRS } from '../../../src/protocol/pcrs.js';
import { NVS, NVS_CMD, NVS_STS, DOMID_IO, FAULT_REASON, type MiniDomainCapability, type NvStoreDevicePort } from '../../../src/node/hypervisor/index.js';
import { AUTH_DEVICE_NVSTORE } from '../../../src/node/hypervisor/pci.js';
import { PlatformPcrBank } from '../../../src/node/hypervisor/devices/platform-pcrs.js';
import { NvStoreDeviceModel } from '../../../src/node/hypervisor/devices/nvstore.js';
import { openMiniDomainDevice } from '../../../src/node/minidomain/device.js';
import { platformQuote } from '../../../src/node/minidomain/evidence.js';
import { verifyQuote } from '../../../src/tpm/quote/verify.js';
import { checkReplay, replay } from '../../../src/tpm/eventlog/replay.js';
import { bootNvStoreNode, type NvStoreNode } from './fixture.js';

const BASE = AUTH_DEVICE_NVSTORE.bars[0]?.base ?? 0;

function recorder(): { caps: MiniDomainCapability[]; entry: (b: { capability: MiniDomainCapability }) => { stop: () => Promise<void> } } {
  const caps: MiniDomainCapability[] = [];
  return { caps, entry: ({ capability }) => (caps.push(capability), { stop: () => Promise.resolve() }) };
}

function portOf(cap: MiniDomainCapability): NvStoreDevicePort {
  assert.equal(cap.authDevice.kind, 'pci-nvstore');
  return cap.authDevice;
}

void describe('pci-nvstore', () => {
  const nodes: NvStoreNode[] = [];
  after(async () => {
    for (const n of nodes) await n.dispose();
  });

  void it('the mini-domain runs the TPM engine on the device: EK chains to the manufacturer, quotes verify and replay, keys survive a reboot', async () => {
    const rec = recorder();
    const n = await bootNvStoreNode({ miniDomain: rec.entry });
    nodes.push(n);
    assert.equal(n.node.status().authDevice.bdf, '00:06.0');
    assert.equal(n.node.status().authDevice.owner, DOMID_IO, 'quarantined before the gate');
    await n.node.dom0.launchMiniDomain(Buffer.from(n.image));
    const cap = rec.caps[0] as MiniDomainCapability;
    assert.equal(n.node.status().authDevice.owner, cap.domainId);
    const device = await openMiniDomainDevice(cap);
    const [ek] = await device.endorsements();
    assert.ok(ek);
    await verifyChain(parseCertificate(ek.certificate), { roots: [n.manufacturer] });
    const ak = await device.ensureAttestationKey(ek.algorithm);
    const qualifyingData = randomBytes(32);
    const quote = await platformQuote(device, ak, qualifyingData);
    const verified = verifyQuote(quote, { akPublic: ak.public, qualifyingData });
    checkReplay(cap.eventLog(), verified.pcrs);
    assert.deepEqual(verified.pcrs.get(PCR.MINIDOMAIN), replay(cap.eventLog())[PCR.MINIDOMAIN]);

    // The keys live on the device: a new node boot on the same medium finds the same AK.
    const rec2 = recorder();
    const node2 = await n.reboot({ miniDomain: rec2.entry });
    await node2.dom0.launchMiniDomain(Buffer.from(n.image));
    const again = await openMiniDomainDevice(rec2.caps[0] as MiniDomainCapability);
    const ak2 = await again.ensureAttestationKey(ek.algorithm);
    assert.equal(toBase64url(ak2.public), toBase64url(ak.public));
    const q2 = await platformQuote(again, ak2, qualifyingData);
    checkReplay((rec2.caps[0] as MiniDomainCapability).eventLog(), verifyQuote(q2, { akPublic: ak2.public, qualifyingData }).pcrs);
  });

  void it('the platform PCRs are the hypervisor\'s: the mini-domain may extend only the others', async () => {
    const rec = recorder();
    const n = await bootNvStoreNode({ miniDomain: rec.entry });
    nodes.push(n);
    await n.node.dom0.launchMiniDomain(Buffer.from(n.image));
    const cap = rec.caps[0] as MiniDomainCapability;
    const device = await openMiniDomainDevice(cap);
    const before = await device.pcrRead(PLATFORM_PCRS);
    for (const pcr of PLATFORM_PCRS) await assert.rejects(device.pcrExtend(pcr, randomBytes(32)), (e) => isTrustlaunchError(e, 'CAPABILITY_DENIED'));
    assert.deepEqual(await device.pcrRead(PLATFORM_PCRS), before);
    assert.equal(n.node.securityEvents().filter((e) => e.kind === 'CAPABILITY_DENIED').length, PLATFORM_PCRS.length);
    await device.pcrExtend(16, randomBytes(32));
    // The engine's own TPM2_Startup (a power-on in the mini-domain) cannot reset the platform's PCRs.
    await device.powerOn();
    assert.deepEqual(await device.pcrRead(PLATFORM_PCRS), before);
  });

  void it('dom0 reaches the device by no path: MMIO, DMA programming and re-assignment are refused, recorded, and change nothing (G3)', async () => {
    const rec = recorder();
    const n = await bootNvStoreNode({ miniDomain: rec.entry });
    nodes.push(n);
    await n.node.dom0.launchMiniDomain(Buffer.from(n.image));
    await openMiniDomainDevice(rec.caps[0] as MiniDomainCapability);
    const medium = n.mediumDigest();
    const snap = n.node.snapshot(true);
    const dom0 = n.node.dom0;
    assert.throws(() => dom0.mmio({ address: BASE + NVS.CMD, size: 4, kind: 'write', value: NVS_CMD.WRITE }), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    assert.throws(() => dom0.mmio({ address: BASE + NVS.ID, size: 4, kind: 'read' }), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    assert.throws(() => dom0.dma('00:06.0', { address: 0, kind: 'read', length: 512 }), (e) => isTrustlaunchError(e, 'MMIO_DENIED'));
    assert.throws(() => dom0.assignDevice('00:06.0', 0), (e) => isTrustlaunchError(e, 'ASSIGNMENT_DENIED'));
    assert.throws(() => dom0.deassignDevice('00:06.0'), (e) => isTrustlaunchError(e, 'ASSIGNMENT_DENIED'));
    assert.deepEqual(n.node.snapshot(true), snap);
    assert.equal(n.mediumDigest(), medium);
    const kinds = n.node.securityEvents().map((e) => e.kind);
    assert.equal(kinds.filter((k) => k === 'MMIO_DENIED').length, 3);
    assert.equal(kinds.filter((k) => k === 'ASSIGNMENT_DENIED').length, 2);
    n.node.checkInvariants();
  });

  void it('a transfer aimed outside the DMA window faults in the IOMMU, sets DMA_FAULT, moves no byte', async () => {
    const rec = recorder();
    const n = await bootNvStoreNode({ miniDomain: rec.entry, limits: { faultThreshold: 1000 } });
    nodes.push(n);
    await n.node.dom0.launchMiniDomain(Buffer.from(n.image));
    const cap = rec.caps[0] as MiniDomainCapability;
    const port = portOf(cap);
    const medium = n.mediumDigest();
    const reg = (o: number, value: number): void => void cap.mmio({ address: port.mmioBase + o, size: 4, kind: 'write', value });
    // Block 1 (slot A's header) → guest page 0, which the mini-domain never mapped for DMA.
    reg(NVS.LBA, 1);
    reg(NVS.COUNT, 1);
    reg(NVS.DMA_LO, 0);
    reg(NVS.DMA_HI, 0);
    reg(NVS.CMD, NVS_CMD.WRITE);
    await port.completion();
    assert.equal(cap.mmio({ address: port.mmioBase + NVS.STS, size: 4, kind: 'read' }) & NVS_STS.DMA_FAULT, NVS_STS.DMA_FAULT);
    const fault = n.node.faultRecords().at(-1);
    assert.equal(fault?.fr, FAULT_REASON.PTE_READ_NOT_SET);
    assert.equal(n.mediumDigest(), medium, 'a faulted write reached the medium');
    // A command beyond the device's limits is an error, not a transfer.
    reg(NVS.COUNT, 100_000);
    reg(NVS.DMA_LO, port.dmaWindow.gpa);
    reg(NVS.CMD, NVS_CMD.READ);
    await port.completion();
    assert.equal(cap.mmio({ address: port.mmioBase + NVS.STS, size: 4, kind: 'read' }) & NVS_STS.ERROR, NVS_STS.ERROR);
  });

  void it('the mini-domain\'s capability reaches no PCR bank, device model or medium object, only functions', async () => {
    const rec = recorder();
    const n = await bootNvStoreNode({ miniDomain: rec.entry });
    nodes.push(n);
    await n.node.dom0.launchMiniDomain(Buffer.from(n.image));
    const cap = rec.caps[0] as MiniDomainCapability;
    const seen = new Set<unknown>();
    const queue: unknown[] = [cap];
    while (queue.length > 0 && seen.size < 10_000) {
      const v = queue.shift();
      if ((typeof v !== 'object' && typeof v !== 'function') || v === null || seen.has(v)) continue;
      seen.add(v);
      for (const key of Reflect.ownKeys(v)) {
        const d = Object.getOwnPropertyDescriptor(v, key);
        if (d !== undefined && 'value' in d) queue.push(d.value);
      }
    }
    for (const v of seen) {
      assert.ok(!(v instanceof PlatformPcrBank), 'the capability reaches the PCR bank');
      assert.ok(!(v instanceof NvStoreDeviceModel), 'the capability reaches the device model');
      assert.ok(!(typeof v === 'object' && v !== null && 'readBlocks' in v), 'the capability reaches a block device');
    }
    assert.ok(Object.isFrozen(cap.authDevice) && Object.isFrozen(portOf(cap).pcrs));
  });

  void it('a destroyed mini-domain\'s driver is dead; the next one passes the gate and finds the state', async () => {
    const rec = recorder();
    const n = await bootNvStoreNode({ miniDomain: rec.entry });
    nodes.push(n);
    await n.node.dom0.launchMiniDomain(Buffer.from(n.image));
    const first = await openMiniDomainDevice(rec.caps[0] as MiniDomainCapability);
    await first.nvDefine(0x01500077, { size: 8 });
    await first.nvWrite(0x01500077, Buffer.from('survives'));
    await n.node.reportMiniDomainCrash('killed');
    assert.equal(n.node.status().authDevice.owner, DOMID_IO);
    // Its engine can no longer reach the device: every store goes through the dead grant.
    await assert.rejects(first.nvWrite(0x01500077, Buffer.from('too late')), (e) => isTrustlaunchError(e, 'DOMAIN_STATE_INVALID'));
    await n.node.dom0.launchMiniDomain(Buffer.from(n.image));
    const second = await openMiniDomainDevice(rec.caps[1] as MiniDomainCapability);
    assert.equal(Buffer.from(await second.nvRead(0x01500077)).toString(), 'survives');
    n.node.checkInvariants();
  });
});
