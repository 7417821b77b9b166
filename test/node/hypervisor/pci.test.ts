import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AUTH_DEVICE_NVSTORE, AUTH_DEVICE_TPM, PciTopology, bdfOfSourceId, formatBdf, nodeTopology, parseBdf, sourceId } from '../../../src/node/hypervisor/pci.js';

void describe('PCI addressing', () => {
  void it('source-id is bus << 8 | device << 3 | function', () => {
    assert.equal(sourceId(parseBdf('00:1f.0')), 0x00f8);
    assert.equal(sourceId(parseBdf('01:00.1')), 0x0101);
    assert.equal(sourceId(parseBdf('ff:1f.7')), 0xffff);
    for (const sid of [0, 0xf8, 0x101, 0xabcd, 0xffff]) assert.equal(sourceId(bdfOfSourceId(sid)), sid);
    assert.equal(formatBdf(parseBdf('0a:1e.3')), '0a:1e.3');
  });

  void it('refuses what is not a PCI address', () => {
    for (const bad of ['00:20.0', '00:1f.8', '100:00.0', '0:1f.0', '00:1F.0', '', '00:1f.0 ']) {
      assert.throws(() => parseBdf(bad), RangeError, bad);
    }
  });
});

void describe('PCI topology', () => {
  void it('places the auth device at its fixed BDF and MMIO window, alone in its group, quarantined', () => {
    for (const [kind, spec] of [['sim', AUTH_DEVICE_TPM], ['pci-nvstore', AUTH_DEVICE_NVSTORE]] as const) {
      const topo = nodeTopology(kind);
      const sid = sourceId(parseBdf(spec.bdf));
      const dev = topo.device(sid);
      assert.equal(dev?.class, 'auth-device');
      assert.equal(dev.initialOwner, 'quarantine');
      assert.deepEqual(topo.groupOf(sid).map((d) => d.sid), [sid]);
      const bar = spec.bars[0];
      assert.ok(bar !== undefined);
      assert.equal(topo.barAt(bar.base + bar.size - 4, 4)?.device.sid, sid);
      assert.equal(topo.barAt(bar.base + bar.size, 4), undefined);
    }
    assert.equal(AUTH_DEVICE_TPM.bdf, '00:1f.0');
    assert.equal(AUTH_DEVICE_TPM.bars[0]?.base, 0xfed40000);
  });

  void it('groups functions that must move together', () => {
    const topo = nodeTopology('sim');
    assert.deepEqual(topo.groupOf(sourceId(parseBdf('00:03.1'))).map((d) => formatBdf(d.bdf)), ['00:03.0', '00:03.1']);
    assert.deepEqual(topo.groupOf(sourceId(parseBdf('00:02.0'))).map((d) => formatBdf(d.bdf)), ['00:02.0']);
    assert.deepEqual(topo.groupOf(0x1234), []);
  });

  void it('rejects duplicate addresses, overlapping or unaligned BARs and groups with mixed owners', () => {
    const dev = (bdf: string, base: number, group = bdf, initialOwner: 'hardware-domain' | 'quarantine' = 'hardware-domain') => ({
      bdf, name: bdf, class: 'network' as const, bars: [{ index: 0, base, size: 0x1000 }], group, initialOwner,
    });
    assert.throws(() => new PciTopology([dev('00:01.0', 0x10000), dev('00:01.0', 0x20000)]), /two devices/);
    assert.throws(() => new PciTopology([dev('00:01.0', 0x10000), dev('00:02.0', 0x10800)]), /not page-aligned|overlap/);
    assert.throws(() => new PciTopology([dev('00:01.0', 0x10000), dev('00:02.0', 0x10000)]), /overlap/);
    assert.throws(() => new PciTopology([dev('00:01.0', 0x10000, 'g'), dev('00:02.0', 0x20000, 'g', 'quarantine')]), /different initial owners/);
  });
});
