// Handing an image to the hypervisor (launch gate and VM build): a Uint8Array is copied
// once into a fresh backing; a whole ArrayBuffer is transferred, so dom0's buffer is
// detached and nothing dom0 still holds reaches the domain's memory. Either way the
// digest is SHA-256 of the bytes in domain memory, and scans coalesce contiguous pages
// without changing a byte (fast-check over sizes, offsets and both hand-over modes).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { DomainMemory, PhysicalMemory } from '../../../src/node/hypervisor/memory.js';
import type { MiniDomainCapability } from '../../../src/node/hypervisor/index.js';
import { bootTestNode } from './node-fixture.js';

const PAGE = 4096;

void describe('image hand-over', () => {
  void it('a transferred ArrayBuffer is detached from dom0: later writes through old views change nothing', async () => {
    const image = randomBytes(5 * PAGE + 77);
    const caps: MiniDomainCapability[] = [];
    const t = await bootTestNode({ image, miniDomain: ({ capability }) => (caps.push(capability), { stop: () => Promise.resolve() }) });
    const handed = new ArrayBuffer(image.length);
    const dom0View = new Uint8Array(handed);
    dom0View.set(image);
    const launch = t.node.dom0.launchMiniDomain(handed);
    // After the call, dom0's buffer is gone: length 0, writes go nowhere.
    assert.equal(handed.byteLength, 0);
    assert.equal(dom0View.length, 0);
    assert.throws(() => dom0View.fill(0xaa), TypeError);
    dom0View[0] = 0xaa;
    assert.equal(dom0View[0], undefined);
    assert.equal((await launch).digest, t.digest);
    assert.equal(sha256Digest(caps[0]?.memory.read(0, image.length) ?? new Uint8Array()), t.digest);
    await t.node.shutdown();
  });

  void it('a VM image transferred or copied gets the same kernel digest; the runner gets the measured bytes', async () => {
    const t = await bootTestNode({ vmRunner: () => Promise.resolve({ stop: () => Promise.resolve() }) });
    const image = randomBytes(3 * 1024 * 1024 + 5);
    const copy = await t.node.dom0.buildVm({ name: 'vm-copy', image: Buffer.from(image) });
    const buffer = new ArrayBuffer(image.length);
    new Uint8Array(buffer).set(image);
    const moved = await t.node.dom0.buildVm({ name: 'vm-moved', image: buffer });
    assert.equal(buffer.byteLength, 0);
    assert.equal(copy.kernelDigest, sha256Digest(image));
    assert.equal(moved.kernelDigest, sha256Digest(image));
    assert.equal(moved.imageBytes, image.length);
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it('refuses what is neither bytes nor a buffer, and an image larger than the memory, before touching dom0\'s buffer', async () => {
    const t = await bootTestNode();
    await assert.rejects(t.node.dom0.launchMiniDomain('image' as unknown as Uint8Array), TypeError);
    const big = new ArrayBuffer(8 * PAGE);
    await assert.rejects(t.node.dom0.buildVm({ name: 'vm-a', image: big, memoryBytes: 4 * PAGE }), (e) => isTrustlaunchError(e, 'CAPACITY_EXCEEDED'));
    assert.equal(big.byteLength, 8 * PAGE, 'a refused build detached the buffer');
    t.node.checkInvariants();
    await t.node.shutdown();
  });

  void it('load + scan + read agree with the bytes for every size, offset and mode (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 9 * PAGE + 3 }), fc.boolean(), fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), (size, transfer, a, b, fill) => {
        const physical = new PhysicalMemory({ maxFrames: 64 });
        const mem = new DomainMemory(physical, 1, 12);
        const bytes = Buffer.alloc(size, fill);
        for (let i = 0; i < size; i += 97) bytes[i] = i & 0xff;
        const expected = Buffer.from(bytes);
        let handed: Uint8Array | ArrayBuffer = bytes;
        if (transfer) {
          handed = new ArrayBuffer(size);
          new Uint8Array(handed).set(bytes);
        }
        assert.equal(mem.load(handed), size);
        bytes.fill(0);
        // A write after the load lands in the right page, whichever backing it has.
        const at = size === 0 ? 0 : a % size;
        if (size > 0) {
          mem.write(at, Buffer.from([0x42]));
          expected[at] = 0x42;
        }
        const from = size === 0 ? 0 : b % size;
        const length = size - from;
        const parts: Buffer[] = [];
        mem.scan(from, length, (v) => parts.push(Buffer.from(v)));
        assert.deepEqual(Buffer.concat(parts), expected.subarray(from));
        assert.deepEqual(Buffer.from(mem.read(from, length)), expected.subarray(from));
        // Beyond the image the memory reads as zeros.
        assert.deepEqual(Buffer.from(mem.read(mem.size - PAGE, PAGE)), Buffer.alloc(PAGE));
        mem.release();
      }),
      { numRuns: 200 },
    );
  });

  void it('scans a contiguous image in one run per call, not one per page', () => {
    const physical = new PhysicalMemory({ maxFrames: 1024 });
    const mem = new DomainMemory(physical, 1, 600);
    mem.load(randomBytes(512 * PAGE));
    let calls = 0;
    mem.scan(0, 512 * PAGE, () => calls++);
    assert.equal(calls, 1);
  });
});
