// Nothing is left behind when the node process dies: its guests stop by themselves when
// their channel closes, and a node restarted on the same runtime directory reaps whatever
// could not (a frozen guest, its sshd, the record, the port reservation, the private key).
// A live node's VMs are never touched. Real node processes, killed with SIGKILL.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { openProcessVmBackend, vmProcesses, type ProcessVmInspection, type ReapedVm } from '../../../src/node/vm/process/index.js';
import { afterRestart, clientKey, killFixtureProcesses, killProcess, portIsFree, ssh, startFixtureProcess, withRuntimeRoot, type ClientKey } from './support.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/node-process.ts', import.meta.url));

interface NodeProcess {
  readonly child: ChildProcess;
  readonly vm: ProcessVmInspection;
  readonly hostKey: string;
  readonly reaped: ReapedVm[];
}

function startNodeProcess(root: string, key: ClientKey): Promise<NodeProcess> {
  return startFixtureProcess<Omit<NodeProcess, 'child'>>(FIXTURE, [root, key.publicKey], 60_000);
}

const identity = (vm: ProcessVmInspection) => ({ marker: vm.marker, dir: vm.dir });

void describe('reaping after the node process dies', () => {
  let key: ClientKey;
  before(async () => {
    key = await clientKey();
  });
  after(async () => {
    await killFixtureProcesses();
    key.dispose();
  });

  void it("a killed node's guest stops by itself; the restarted node removes its record, port and directory", async () => {
    await withRuntimeRoot('tl-reap-', async (root) => {
      const n = await startNodeProcess(root, key);
      assert.deepEqual(n.reaped, []);
      assert.ok(vmProcesses(identity(n.vm)).length >= 2, 'guest and sshd run');
      await killProcess(n.child);
      await waitUntil(() => vmProcesses(identity(n.vm)).length === 0); // the channel closed: the guest stopped
      assert.equal(await portIsFree(n.vm.sshPort), true);
      assert.equal(existsSync(n.vm.dir), true, 'the record stays until a node reaps it');
      assert.deepEqual(readdirSync(join(root, 'ports')), [String(n.vm.sshPort)]);

      await afterRestart(() => openProcessVmBackend({ runtimeRoot: root }), (restarted) => {
        assert.deepEqual(restarted.reaped.map((r) => ({ name: r.name, killed: r.killed, survivors: r.survivors })), [{ name: 'vm-orphan', killed: 0, survivors: 0 }]);
        assert.equal(existsSync(n.vm.dir), false);
        assert.deepEqual(readdirSync(join(root, 'ports')), []);
        assert.deepEqual(readdirSync(join(root, 'vms')), []);
      });
    });
  });

  void it('a frozen guest of a killed node, and its sshd, are killed by the restarted node', async () => {
    await withRuntimeRoot('tl-reap-', async (root) => {
      const n = await startNodeProcess(root, key);
      const frozen = vmProcesses(identity(n.vm));
      assert.ok(frozen.length >= 2);
      for (const p of frozen) process.kill(p.pid, 'SIGSTOP'); // it cannot notice its channel closing
      await killProcess(n.child);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(vmProcesses(identity(n.vm)).length, frozen.length, 'without a reaper they would stay');
      assert.equal(await portIsFree(n.vm.sshPort), false);

      await afterRestart(() => openProcessVmBackend({ runtimeRoot: root }), async (restarted) => {
        const [reaped] = restarted.reaped;
        assert.equal(restarted.reaped.length, 1);
        assert.equal(reaped?.name, 'vm-orphan');
        assert.ok((reaped?.killed ?? 0) >= 2, 'guest and sshd were killed');
        assert.equal(reaped?.survivors, 0);
        assert.deepEqual(vmProcesses(identity(n.vm)), []);
        assert.equal(await portIsFree(n.vm.sshPort), true);
        assert.equal(existsSync(n.vm.dir), false, 'the private key went with the directory');
        assert.deepEqual(readdirSync(join(root, 'ports')), []);
      });
    });
  });

  void it("never touches a live node's VMs", async () => {
    await withRuntimeRoot('tl-reap-', async (root) => {
      const n = await startNodeProcess(root, key);
      const neighbour = await openProcessVmBackend({ runtimeRoot: root });
      assert.deepEqual(neighbour.reaped, []);
      const r = await ssh({ port: n.vm.sshPort, key, knownHosts: `[127.0.0.1]:${n.vm.sshPort} ${n.hostKey}\n`, command: 'echo alive' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'alive');
      await neighbour.close();
      await killProcess(n.child);
      await waitUntil(() => vmProcesses(identity(n.vm)).length === 0);
      await afterRestart(() => openProcessVmBackend({ runtimeRoot: root }), (restarted) => assert.equal(restarted.reaped.length, 1));
    });
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
