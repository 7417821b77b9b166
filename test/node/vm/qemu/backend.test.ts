// The QEMU backend under the real hypervisor:
//  - no time-of-check/time-of-use gap: after the hypervisor measured the bundle, dom0
//    rewrites its files and buffers; QEMU's command line (read from /proc) names only the
//    hypervisor's copies in a 0700 directory, those copies hash to the measured digests,
//    the command line is the measured one, and the guest boots from them;
//  - a node killed with SIGKILL leaves no QEMU behind: with the parent-death signal QEMU
//    dies with it; without it, the restarted node's reaper kills the orphan; either way the
//    record, the port reservation and the directory (with the kernel copies) go.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { holdsListener } from '../../../../src/node/vm/proc.js';
import { openQemuVmBackend, type QemuVmInspection } from '../../../../src/node/vm/qemu/index.js';
import type { ReapedVm } from '../../../../src/node/vm/reaper.js';
import type { GuestBundle } from '../../../../src/node/vm/qemu/guest-image.js';
import { processExists } from '../../../support/qemu.js';
import { requireCommand, tempDir } from '../../../support/system.js';
import { afterRestart, clientKey, killFixtureProcesses, killProcess, portIsFree, startFixtureProcess, withRuntimeRoot, type ClientKey } from '../support.js';
import { BOOT_MS, bootQemuNode, guest, qemuProcessesNaming, waitUntil } from './support.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/qemu-node.ts', import.meta.url));
const MiB = 1024 * 1024;
const sha256 = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

let g: GuestBundle;
let key: ClientKey;

before(async () => {
  g = guest();
  key = await clientKey();
});
after(async () => {
  await killFixtureProcesses();
  key.dispose();
});

/** QEMU's argument vector as the kernel shows it (/proc/PID/cmdline). */
function procArgv(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
}
const after_ = (argv: readonly string[], flag: string): string | undefined => argv[argv.indexOf(flag) + 1];

void describe('the QEMU backend boots exactly what the hypervisor measured', () => {
  void it("dom0's files and buffers changed after measurement change nothing: QEMU reads only the hypervisor's copies", async () => {
    const qn = await bootQemuNode();
    const disk = tempDir('tl-dom0-disk-');
    try {
      // dom0's disk: the bundle's parts, read into dom0's buffers, handed over.
      const paths = { kernel: join(disk.path, 'vmlinuz'), initrd: join(disk.path, 'initrd.img'), cmdline: join(disk.path, 'cmdline') };
      copyFileSync(g.kernelPath, paths.kernel);
      copyFileSync(g.initrdPath, paths.initrd);
      copyFileSync(g.cmdlinePath, paths.cmdline);
      const buffers = { kernel: readFileSync(paths.kernel), initrd: readFileSync(paths.initrd), cmdline: readFileSync(paths.cmdline) };
      const info = await qn.node.dom0.buildVm({ name: 'vm-toctou', image: buffers, memoryBytes: 192 * MiB, guest: { hostname: 'vm-toctou.test', authorizedKeys: [key.publicKey] } });
      assert.deepEqual(info.measurements, g.manifest);
      // After measurement, before the start: dom0 swaps everything it can reach.
      for (const b of [buffers.kernel, buffers.initrd]) b.fill(0x41, 0, 4096);
      buffers.cmdline.write('init=/bin/sh ');
      writeFileSync(paths.kernel, Buffer.alloc(1 << 20, 0x90));
      writeFileSync(paths.initrd, Buffer.alloc(1 << 20, 0x91));
      writeFileSync(paths.cmdline, 'console=ttyS0 init=/bin/sh');
      await qn.node.dom0.startVm(info.vmId);

      const i = qn.backend.inspect(info.vmId) as QemuVmInspection;
      assert.ok(i);
      const argv = procArgv(i.qemuPid);
      assert.deepEqual(argv, [...i.argv], "QEMU runs with the argument vector the backend gave it");
      assert.equal(after_(argv, '-kernel'), join(i.dir, 'vmlinuz'));
      assert.equal(after_(argv, '-initrd'), join(i.dir, 'initrd.img'));
      assert.equal(after_(argv, '-append'), g.cmdline, 'the measured command line');
      assert.ok(!argv.some((a) => a.includes(disk.path)), "nothing of dom0's disk is named");
      assert.ok(i.dir.startsWith(join(qn.runtimeRoot, 'vms')));
      // The directory only the hypervisor (the node's user) reaches; the copies read-only and exactly the measured bytes.
      assert.equal(statSync(i.dir).mode & 0o777, 0o700);
      for (const [file, digest] of [['vmlinuz', g.manifest.kernel], ['initrd.img', g.manifest.initrd]] as const) {
        const path = join(i.dir, file);
        assert.equal(statSync(path).mode & 0o777, 0o400, `${file} is read-only`);
        assert.equal(sha256(readFileSync(path)), digest, `${file} is the measured copy`);
      }
      // Networking: nothing but the one forwarded loopback port, held by this QEMU.
      assert.equal(after_(argv, '-netdev'), `user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:${i.sshPort}-:22`);
      assert.equal(holdsListener(i.qemuPid, i.sshPort), true);
      // And the guest boots from those copies: its key arrives on the channel, its sshd listens.
      await qn.backend.waitForGuest(info.vmId, 'host-key', BOOT_MS);
      await qn.backend.waitForGuest(info.vmId, 'ready', BOOT_MS);
      const report = await qn.mini.waitForVmReport(info.vmId, 5000);
      assert.deepEqual(report.measurements, g.manifest);
      assert.match(qn.backend.console(info.vmId) ?? '', /trustlaunch-guest: .*sshd listening on port 22/);

      await qn.node.dom0.destroyVm(info.vmId);
      assert.equal(processExists(i.qemuPid), false);
      assert.equal(existsSync(i.dir), false, 'the copies went with the VM');
      assert.equal(await portIsFree(i.sshPort), true);
      assert.deepEqual(qn.backend.capacity().chargedBytes, 0);
    } finally {
      disk.dispose();
      await qn.close();
    }
  });
});

interface NodeProcess {
  readonly child: ChildProcess;
  readonly vm: QemuVmInspection;
  readonly reaped: ReapedVm[];
}

function startNodeProcess(root: string, deathSignal: 'on' | 'off'): Promise<NodeProcess> {
  return startFixtureProcess<Omit<NodeProcess, 'child'>>(FIXTURE, [root, deathSignal, key.publicKey], 90_000);
}

void describe('a node killed with SIGKILL leaves no QEMU behind', () => {
  void it('with the parent-death signal QEMU dies with the node; the restarted node removes record, port reservation and copies', async () => {
    requireCommand('setpriv'); // util-linux: the parent-death signal
    await withRuntimeRoot('tl-qreap-', async (root) => {
      const n = await startNodeProcess(root, 'on');
      assert.equal(processExists(n.vm.qemuPid), true);
      assert.deepEqual(qemuProcessesNaming(n.vm.dir), [n.vm.qemuPid]);
      await killProcess(n.child);
      assert.equal(await waitUntil(() => !processExists(n.vm.qemuPid), 10_000), true, 'QEMU got SIGKILL when its node died');
      assert.equal(await waitUntil(() => portIsFree(n.vm.sshPort)), true);
      assert.equal(existsSync(join(n.vm.dir, 'vmlinuz')), true, 'the directory stays until a node reaps it');
      assert.deepEqual(readdirSync(join(root, 'ports')), [String(n.vm.sshPort)]);

      await afterRestart(() => openQemuVmBackend({ runtimeRoot: root }), (restarted) => {
        assert.deepEqual(restarted.reaped.map((r) => [r.vmId, r.name, r.survivors]), [[n.vm.vmId, 'vm-orphan', 0]]);
        assert.equal(existsSync(n.vm.dir), false);
        assert.deepEqual(readdirSync(join(root, 'ports')), []);
      });
    });
  });

  void it('without it, the orphaned QEMU runs on until the restarted node reaps it: killed, its port free, its copies gone', async () => {
    await withRuntimeRoot('tl-qreap-', async (root) => {
      mkdirSync(root, { mode: 0o700 });
      const n = await startNodeProcess(root, 'off');
      await killProcess(n.child);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(processExists(n.vm.qemuPid), true, 'the orphan outlived its node');
      assert.equal(holdsListener(n.vm.qemuPid, n.vm.sshPort), true, 'and still holds its port');

      await afterRestart(() => openQemuVmBackend({ runtimeRoot: root }), async (restarted) => {
        const reaped = restarted.reaped.find((r) => r.vmId === n.vm.vmId);
        assert.ok(reaped, JSON.stringify(restarted.reaped));
        assert.ok(reaped.killed >= 1, 'the reaper killed QEMU');
        assert.equal(reaped.survivors, 0);
        // (no longer running at once; gone from the process table once init collected the orphan)
        assert.equal(await waitUntil(() => !processExists(n.vm.qemuPid)), true);
        assert.deepEqual(qemuProcessesNaming(n.vm.dir), []);
        assert.equal(await waitUntil(() => portIsFree(n.vm.sshPort)), true);
        assert.equal(existsSync(n.vm.dir), false);
        assert.deepEqual(readdirSync(join(root, 'ports')), []);
      });
    });
  });
});
