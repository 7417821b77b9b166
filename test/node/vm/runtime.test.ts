// The process backend's runtime directory and SSH ports: a directory open to others is
// refused; ports are never handed out twice (within a backend, across backends sharing a
// root) nor while something listens on them; the reaper leaves a VM being created alone.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, symlinkSync, utimesSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { PortAllocator } from '../../../src/node/vm/ports.js';
import { reapLeftovers } from '../../../src/node/vm/reaper.js';
import { RuntimeDir, type VmRecord } from '../../../src/node/vm/runtime-dir.js';
import { tempDir } from '../../support/system.js';

// Below the default range, so concurrent test files' VMs never meet these.
const RANGE = { from: 19_400, to: 19_403 };

function record(vmId: number, ownerPid = process.pid): VmRecord {
  return { v: 1, vmId, name: `vm-${vmId}`, marker: '0'.repeat(31) + String(vmId % 10), owner: { pid: ownerPid, startTime: '1' }, guest: null, sshPort: null, createdAt: new Date().toISOString() };
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

void describe('process backend runtime directory', () => {
  void it('refuses a root that others can reach, or a symlink', () => {
    const tmp = tempDir('tl-rt-');
    try {
      const open = join(tmp.path, 'open');
      mkdirSync(open, { mode: 0o755 });
      chmodSync(open, 0o755);
      assert.throws(() => RuntimeDir.open(open), (e) => isTrustlaunchError(e, 'FILE_INSECURE'));
      const real = join(tmp.path, 'real');
      RuntimeDir.open(real);
      symlinkSync(real, join(tmp.path, 'link'));
      assert.throws(() => RuntimeDir.open(join(tmp.path, 'link')), (e) => isTrustlaunchError(e, 'FILE_INSECURE'));
    } finally {
      tmp.dispose();
    }
  });

  void it('never hands out a port twice, across allocators sharing a root, nor one in use', async () => {
    const tmp = tempDir('tl-rt-');
    const busy = await listen(RANGE.from + 2);
    try {
      const dir = RuntimeDir.open(join(tmp.path, 'rt'));
      const a = new PortAllocator(dir, RANGE);
      const b = new PortAllocator(dir, RANGE);
      const vmA = dir.createVm(record(1));
      const vmB = dir.createVm(record(2));
      const got = [await a.allocate(vmA), await b.allocate(vmB), await a.allocate(vmA)];
      assert.equal(new Set(got).size, 3);
      assert.ok(!got.includes(RANGE.from + 2), 'the port in use was skipped');
      for (const p of got) assert.ok(p >= RANGE.from && p <= RANGE.to);
      await assert.rejects(b.allocate(vmB), (e) => isTrustlaunchError(e, 'CAPACITY_EXCEEDED'));
      a.release(got[0] as number);
      assert.equal(await b.allocate(vmB), got[0]);
      b.release(got[0] as number); // a release by the holder only
      a.release(got[1] as number); // not a's: nothing happens
      assert.deepEqual(readdirSync(join(dir.root, 'ports')).map(Number).sort(), [got[1], got[2]].sort());
    } finally {
      busy.close();
      tmp.dispose();
    }
  });

  void it("reaps a dead owner's VM, leaves a live owner's and a young unrecorded one, removes an old unrecorded one", async () => {
    const tmp = tempDir('tl-rt-');
    try {
      const dir = RuntimeDir.open(join(tmp.path, 'rt'));
      const dead = dir.createVm({ ...record(1), owner: { pid: 2 ** 22 + 1, startTime: '1' } }); // no such pid
      const { ownStartTime } = await import('../../../src/node/vm/proc.js');
      const live = dir.createVm({ ...record(2), owner: { pid: process.pid, startTime: ownStartTime() } });
      const young = join(tmp.path, 'rt', 'vms', '3-vm-3-aaaaaaaaaaaa');
      const old = join(tmp.path, 'rt', 'vms', '4-vm-4-bbbbbbbbbbbb');
      mkdirSync(young, { mode: 0o700 });
      mkdirSync(old, { mode: 0o700 });
      const past = new Date(Date.now() - 120_000);
      utimesSync(old, past, past);
      assert.ok(dir.reservePort(19_499, dead));
      const reaped = await reapLeftovers(dir);
      assert.deepEqual(reaped.map((r) => r.dir).sort(), [dead.name, '4-vm-4-bbbbbbbbbbbb'].sort());
      assert.deepEqual(readdirSync(join(tmp.path, 'rt', 'vms')).sort(), [live.name, '3-vm-3-aaaaaaaaaaaa'].sort());
      assert.deepEqual(readdirSync(join(tmp.path, 'rt', 'ports')), [], "the dead VM's port reservation is released");
    } finally {
      tmp.dispose();
    }
  });
});
