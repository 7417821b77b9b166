// The policy matchers as plain functions: allowlist (kernel, optional initrd/cmdline pins,
// expiry, revocation) and platform reference values (hypervisor, mini-domain, firmware,
// boot configuration, PCR values), over event logs the hypervisor's own measured boot makes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { entryMatches, matchAllowlist, type AllowlistEntry } from '../../src/ca/policy/allowlist.js';
import { matchPlatform, type PlatformReference } from '../../src/ca/policy/platform.js';
import { sha256, sha256Digest, type Digest } from '../../src/protocol/digest.js';
import { PCR } from '../../src/protocol/pcrs.js';
import { EV } from '../../src/tpm/eventlog/event-types.js';
import { sha256Event, type TcgEvent } from '../../src/tpm/eventlog/event.js';
import { replay } from '../../src/tpm/eventlog/replay.js';
import { defaultMeasurements, SimNode } from './support/sim-node.js';

const d = (s: string): Digest => sha256Digest(s);
const entry = (e: Partial<AllowlistEntry> & { name: string; kernel: Digest }): AllowlistEntry => ({ createdAt: 0, ...e });
const NOW = Date.parse('2027-01-01T00:00:00Z');

describe('allowlist', () => {
  it('allows a listed kernel and names the entry', () => {
    const r = matchAllowlist([entry({ name: 'a', kernel: d('k1') }), entry({ name: 'b', kernel: d('k2') })], { kernel: d('k2') }, NOW);
    assert.deepEqual(r.ok && r.entry.name, 'b');
  });

  it('refuses an unlisted kernel with KERNEL_NOT_ALLOWED', () => {
    const r = matchAllowlist([entry({ name: 'a', kernel: d('k1') })], { kernel: d('other') }, NOW);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, 'KERNEL_NOT_ALLOWED');
  });

  it('an entry pinning the triple refuses a swapped initrd or cmdline, and a launch without them', () => {
    const triple = entry({ name: 'qemu', kernel: d('vmlinuz'), initrd: d('initrd'), cmdline: d('console=ttyS0') });
    assert.equal(matchAllowlist([triple], { kernel: d('vmlinuz'), initrd: d('initrd'), cmdline: d('console=ttyS0') }, NOW).ok, true);
    for (const image of [
      { kernel: d('vmlinuz'), initrd: d('evil initrd'), cmdline: d('console=ttyS0') },
      { kernel: d('vmlinuz'), initrd: d('initrd'), cmdline: d('init=/bin/sh') },
      { kernel: d('vmlinuz') },
    ]) {
      const r = matchAllowlist([triple], image, NOW);
      assert.equal(!r.ok && r.code, 'KERNEL_NOT_ALLOWED', JSON.stringify(image));
      assert.match(!r.ok ? r.message : '', /allowlisted only with another (initrd|cmdline)/);
    }
  });

  it('an entry pinning only the kernel accepts any initrd and cmdline', () => {
    assert.equal(matchAllowlist([entry({ name: 'k', kernel: d('vmlinuz') })], { kernel: d('vmlinuz'), initrd: d('x'), cmdline: d('y') }, NOW).ok, true);
  });

  it('expired and revoked entries refuse with their own codes; a valid entry for the same image still allows', () => {
    const expired = entry({ name: 'old', kernel: d('k'), expiresAt: NOW - 1 });
    const revoked = entry({ name: 'bad', kernel: d('k'), revokedAt: NOW - 10, expiresAt: NOW - 1 });
    assert.equal(((r) => !r.ok && r.code)(matchAllowlist([expired], { kernel: d('k') }, NOW)), 'KERNEL_EXPIRED');
    assert.equal(((r) => !r.ok && r.code)(matchAllowlist([revoked], { kernel: d('k') }, NOW)), 'KERNEL_REVOKED');
    assert.equal(((r) => !r.ok && r.code)(matchAllowlist([expired, revoked], { kernel: d('k') }, NOW)), 'KERNEL_REVOKED');
    assert.equal(matchAllowlist([expired, revoked, entry({ name: 'new', kernel: d('k') })], { kernel: d('k') }, NOW).ok, true);
    // expiry is exclusive: valid strictly before expiresAt
    assert.equal(matchAllowlist([entry({ name: 'edge', kernel: d('k'), expiresAt: NOW + 1 })], { kernel: d('k') }, NOW).ok, true);
    assert.equal(matchAllowlist([entry({ name: 'edge', kernel: d('k'), expiresAt: NOW })], { kernel: d('k') }, NOW).ok, false);
  });

  it('property: the verdict allows exactly when some matching entry is neither revoked nor expired', () => {
    const digest = fc.constantFrom(d('a'), d('b'), d('c'));
    const arbEntry = fc.record({
      name: fc.constantFrom('e1', 'e2', 'e3', 'e4'),
      kernel: digest,
      initrd: fc.option(digest, { nil: undefined }),
      cmdline: fc.option(digest, { nil: undefined }),
      expiresAt: fc.option(fc.integer({ min: NOW - 5, max: NOW + 5 }), { nil: undefined }),
      revokedAt: fc.option(fc.constant(NOW - 100), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(arbEntry, { maxLength: 6 }), digest, fc.option(digest, { nil: undefined }), fc.option(digest, { nil: undefined }), (raw, kernel, initrd, cmdline) => {
        const entries = raw.map((e) => entry(Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as AllowlistEntry));
        const image = { kernel, initrd, cmdline };
        const r = matchAllowlist(entries, image, NOW);
        const usable = entries.filter((e) => entryMatches(e, image) && e.revokedAt === undefined && (e.expiresAt === undefined || NOW < e.expiresAt));
        assert.equal(r.ok, usable.length > 0);
        if (r.ok) assert.ok(usable.includes(r.entry));
        else if (entries.some((e) => entryMatches(e, image) && e.revokedAt !== undefined)) assert.equal(r.code, 'KERNEL_REVOKED');
        else if (entries.some((e) => entryMatches(e, image))) assert.equal(r.code, 'KERNEL_EXPIRED');
        else assert.equal(r.code, 'KERNEL_NOT_ALLOWED');
      }),
    );
  });
});

describe('platform reference values', () => {
  const m = defaultMeasurements();
  let node: SimNode;
  const reference = (over: Partial<PlatformReference> = {}): PlatformReference => ({ ...node.platformReference('ref'), createdAt: 0, ...over });
  const quoted = (events: readonly TcgEvent[]): Map<number, Buffer> => {
    const v = replay(events);
    return new Map([PCR.PLATFORM_FIRMWARE, PCR.HYPERVISOR, PCR.BOOT_CONFIG, PCR.MINIDOMAIN].map((i) => [i, v[i] as Buffer]));
  };

  it('matches the measured boot of a real node (hypervisor measured boot and launch gate)', async () => {
    node = await SimNode.create({ measurements: m });
    const r = matchPlatform([reference()], node.events, quoted(node.events));
    assert.equal(r.ok && r.reference.name, 'ref');
  });

  it('refuses another hypervisor, another mini-domain, firmware or boot configuration', () => {
    for (const [field, value] of [
      ['hypervisor', d('patched hypervisor')],
      ['minidomain', d('patched mini-domain')],
      ['firmware', d('other firmware')],
      ['bootConfig', d('other boot configuration')],
    ] as const) {
      const r = matchPlatform([reference({ [field]: value })], node.events, quoted(node.events));
      assert.equal(r.ok, false, field);
      assert.match(!r.ok ? r.message : '', /expected/);
    }
  });

  it('optional fields pin only when given', () => {
    const { firmware: _f, bootConfig: _b, ...loose } = reference();
    assert.equal(matchPlatform([loose], node.events, quoted(node.events)).ok, true);
  });

  it('every mini-domain launch must be the reference image, and there must be one', () => {
    const other = sha256Event(PCR.MINIDOMAIN, EV.EV_IPL, Buffer.from('second launch'), sha256('a different image'));
    const events = [...node.events, other];
    assert.equal(matchPlatform([reference()], events, quoted(events)).ok, false);
    const again = sha256Event(PCR.MINIDOMAIN, EV.EV_IPL, Buffer.from('relaunch'), sha256(`mini-domain image trusted`));
    assert.equal(matchPlatform([reference()], [...node.events, again], quoted([...node.events, again])).ok, true, 'a relaunch of the same image is fine (G6)');
    const none = node.events.filter((e) => e.pcrIndex !== PCR.MINIDOMAIN);
    const r = matchPlatform([reference()], none, quoted(none));
    assert.match(!r.ok ? r.message : '', /no mini-domain measurement in PCR 12/);
  });

  it('a hypervisor measurement hidden in an EV_NO_ACTION event does not count', () => {
    const hidden = node.events.map((e) => (e.pcrIndex === PCR.HYPERVISOR ? { ...e, eventType: EV.EV_NO_ACTION } : e));
    assert.equal(matchPlatform([reference()], hidden, quoted(node.events)).ok, false);
  });

  it('pinned PCR values must equal the quoted values', () => {
    const q = quoted(node.events);
    const hex = (q.get(PCR.HYPERVISOR) as Buffer).toString('hex');
    assert.equal(matchPlatform([reference({ pcrs: { '4': hex } })], node.events, q).ok, true);
    assert.equal(matchPlatform([reference({ pcrs: { '4': '00'.repeat(32) } })], node.events, q).ok, false);
  });

  it('the first matching reference wins; no references at all is a refusal that says so', async () => {
    const r = matchPlatform([reference({ name: 'no', hypervisor: d('x') }), reference({ name: 'yes' })], node.events, quoted(node.events));
    assert.equal(r.ok && r.reference.name, 'yes');
    const empty = matchPlatform([], node.events, quoted(node.events));
    assert.match(!empty.ok ? empty.message : '', /no platform reference values/);
    await node.dispose();
  });
});
