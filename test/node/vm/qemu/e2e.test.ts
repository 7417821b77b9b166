// Real Linux VMs under QEMU, end to end through the user's flow: the guest built by
// scripts/build-guest.sh, pushed with `trustlaunch image push --bundle`, allowlisted at
// the CA as its (kernel, initrd, cmdline) triple; a node with `--vm-backend qemu`; the
// client SDK's `createVm` → the CA's receipt → a real `ssh` login with
// StrictHostKeyChecking=yes, once trusting only the plain known_hosts line and once only
// the @cert-authority line. Then the node's disk is tampered with — the initramfs, then the
// kernel — and the same request is contraindicated, refused by the client, and nothing is
// written to known_hosts.
//
// Oracles beyond the client's verdict: OpenSSH itself (`ssh` with only the line under
// test; a control with neither), the receipt's claims against the manifest build-guest
// wrote, the CA's decisions log, QEMU's own command line in /proc, SHA-256 of the files.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TrustlaunchClient } from '../../../../src/client/client.js';
import { decodeReceiptUnverified } from '../../../../src/crypto/receipts.js';
import { isTrustlaunchError } from '../../../../src/protocol/errors.js';
import type { QemuVmBackend } from '../../../../src/node/vm/qemu/index.js';
import { IMAGE_NAME, run, startQemuCloud, type QemuCloud } from './cloud.js';
import { BOOT_MS, waitUntil } from './support.js';

const fileText = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};
const sha256 = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

void describe('QEMU VMs end to end (manager, CA, node --vm-backend qemu, client SDK)', () => {
  let cloud: QemuCloud;
  let client: TrustlaunchClient;
  let backend: QemuVmBackend;

  before(async () => {
    cloud = await startQemuCloud();
    client = await cloud.client();
    backend = cloud.backend;
  });
  after(async () => {
    await cloud?.dispose();
  });

  void it('boots the measured guest, attests it, and ssh logs in through the plain host key line, then through @cert-authority alone', async () => {
    const g = cloud.guest;
    // Before the first boot the node has not chosen an accelerator yet.
    const before = await cloud.dom0.call<{ vm: { backend: string; accelerator?: { setting: string; accel: string | null } } }>('GET', '/v1/node');
    assert.deepEqual(before.vm, { backend: 'qemu', accelerator: { setting: 'auto', accel: null, reason: null } });

    const created = await client.createVm({ image: IMAGE_NAME, name: 'deb', expectKernel: g.manifest.kernel, timeoutMs: BOOT_MS });
    const vmId = created.vm.vmId;
    assert.deepEqual([...created.launch.passed], ['signature', 'nonce', 'status', 'vm', 'kernel', 'hostKey', 'hostCertificate', 'authorizedKey']);
    assert.equal(created.probed, true, 'the SSH endpoint presented the attested key');
    const claims = created.launch.claims;
    assert.equal(claims['ear.status'], 'affirming');
    // The receipt names all three measurements: exactly the digests build-guest wrote.
    assert.deepEqual([claims.kernel, claims.initrd, claims.cmdline], [g.manifest.kernel, g.manifest.initrd, g.manifest.cmdline]);
    assert.equal(claims.allowlist, 'debian-guest');
    const decisions = (await cloud.ca.admin.decisions({})).decisions.filter((d) => d.vm === vmId);
    assert.deepEqual(decisions.map((d) => d.outcome), ['affirming']);

    // The node's status names the accelerator it chose by itself, and why.
    const status = await cloud.dom0.call<{ vm: { accelerator: { setting: string; accel: string; reason: string } } }>('GET', '/v1/node');
    assert.equal(status.vm.accelerator.setting, 'auto');
    assert.ok(['kvm', 'tcg'].includes(status.vm.accelerator.accel), JSON.stringify(status.vm));
    assert.ok(status.vm.accelerator.reason.length > 0);
    console.log(`# QEMU accelerator chosen by the node: ${status.vm.accelerator.accel} (${status.vm.accelerator.reason})`);

    // The endpoint the manager reported is the node's forwarded port, held by this VM's QEMU.
    const domain = cloud.node.hypervisor.dom0.vms().find((v) => v.name === vmId && v.state === 'running');
    assert.ok(domain);
    const inspected = backend.inspect(domain.vmId);
    assert.ok(inspected);
    assert.deepEqual(created.endpoint, { host: '127.0.0.1', port: inspected.sshPort });
    assert.ok(inspected.argv.includes(`user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:${inspected.sshPort}-:22`));
    assert.equal(inspected.accelerator.accel, status.vm.accelerator.accel);

    const file = client.paths.knownHosts;
    const text = fileText(file);
    const plain = text.split('\n').find((l) => l.startsWith(`${vmId} `));
    const ca = text.split('\n').find((l) => l.startsWith(`@cert-authority ${vmId} `));
    assert.equal(plain, `${vmId} ${created.launch.hostKey}`);
    assert.equal(ca, `@cert-authority ${vmId} ${client.ca.sshCaKeyLine}`);

    const marker = `hello-from-${vmId}`;
    const { argv } = await client.sshArguments('deb', { command: ['echo', marker], extraOptions: ['BatchMode=yes', 'ConnectTimeout=20'] });
    assert.ok(argv.includes('StrictHostKeyChecking=yes') && argv.includes(`UserKnownHostsFile=${file}`) && argv.includes(`HostKeyAlias=${vmId}`));
    // 1. only the plain host key line
    writeFileSync(file, `${plain}\n`);
    const viaKey = await run('ssh', argv, { timeoutMs: 60_000 });
    assert.equal(viaKey.status, 0, viaKey.stderr);
    assert.equal(viaKey.stdout.trim(), marker);
    // 2. only the @cert-authority line: the guest's sshd presents the CA's certificate for its name
    writeFileSync(file, `${ca}\n`);
    const viaCert = await run('ssh', argv, { timeoutMs: 60_000 });
    assert.equal(viaCert.status, 0, viaCert.stderr);
    assert.equal(viaCert.stdout.trim(), marker);
    // 3. neither (the same key under another name): strict checking refuses — the control
    writeFileSync(file, `${plain?.replace(vmId, 'vm-someoneelse00000')}\n`);
    const refused = await run('ssh', argv, { timeoutMs: 60_000 });
    assert.equal(refused.status, 255);
    assert.match(refused.stderr, /Host key verification failed/);
    assert.doesNotMatch(refused.stdout, new RegExp(marker));
    writeFileSync(file, text);

    // The serial console (dom0's) shows the boot, never the key.
    const serial = backend.console(domain.vmId) ?? '';
    assert.match(serial, /trustlaunch-guest: .*booting/);
    assert.ok(!serial.includes(created.launch.hostKey.split(' ')[1] as string), 'the host key never appears on the console');

    await client.removeVm('deb');
    assert.equal(await waitUntil(() => backend.inspect(domain.vmId) === undefined, 30_000), true, 'the VM stopped on its node');
  });

  for (const part of ['initrd', 'kernel'] as const) {
    void it(`a ${part === 'initrd' ? 'tampered initramfs' : 'tampered kernel'} on the node's disk is contraindicated; the client refuses it and writes nothing`, async () => {
      const g = cloud.guest;
      const digest = g.manifest[part];
      const onDisk = join(cloud.init.paths.images, 'sha256', digest.slice('sha256:'.length));
      const original = readFileSync(onDisk);
      assert.equal(sha256(original), digest, 'dom0 holds the pushed part under its digest');
      // A hostile dom0 rewrites the file in place (its name still claims the old digest).
      const tampered = part === 'initrd' ? await prependCpio(original) : Buffer.concat([original, Buffer.alloc(4096, 0x90)]);
      chmodSync(onDisk, 0o600);
      writeFileSync(onDisk, tampered);
      const knownHostsBefore = fileText(client.paths.knownHosts);
      const vmsBefore = (await client.listVms()).length;
      try {
        const refused = await client.createVm({ image: IMAGE_NAME, name: `tampered-${part}`, timeoutMs: BOOT_MS }).then(
          () => assert.fail('the client accepted a tampered VM'),
          (e: unknown) => e,
        );
        assert.ok(isTrustlaunchError(refused, 'RECEIPT_CONTRAINDICATED'), String(refused));
        assert.equal(fileText(client.paths.knownHosts), knownHostsBefore, 'nothing written to known_hosts');
        // The CA judged it, for the reason that the triple does not match.
        const vm = (await client.listVms()).find((l) => l.vm.name === `tampered-${part}`);
        assert.ok(vm, 'the manager shows the VM');
        assert.equal(vm.verified, false);
        const decision = (await cloud.ca.admin.decisions({})).decisions.find((d) => d.vm === vm.vm.vmId);
        assert.equal(decision?.outcome, 'contraindicated');
        const receipt = await cloud.ca.client.receipt(vm.vm.nonce);
        const claims = decodeReceiptUnverified(receipt.receipt).claims;
        assert.equal(claims[part], sha256(tampered), `the receipt names the tampered ${part}'s digest`);
        const other = part === 'initrd' ? 'kernel' : 'initrd';
        assert.equal(claims[other], g.manifest[other]);
        assert.equal(receipt.hostCertificate, undefined, 'no host certificate for a contraindicated launch');
        assert.equal((await client.listVms()).length, vmsBefore + 1);
        await client.removeVm(vm.vm.vmId);
      } finally {
        writeFileSync(onDisk, original);
      }
    });
  }
});

/** The initramfs with a small uncompressed cpio archive in front (as early microcode is): it still boots, and hashes differently. */
async function prependCpio(initrd: Buffer): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'tl-cpio-'));
  try {
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc', 'tampered-by-dom0'), 'a hostile dom0 was here\n');
    const cpio = await new Promise<Buffer>((resolve, reject) => {
      const child = spawn('cpio', ['--create', '--format=newc', '--quiet'], { cwd: dir, stdio: ['pipe', 'pipe', 'inherit'] });
      const chunks: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => chunks.push(d));
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`cpio exited ${String(code)}`))));
      child.stdin.end('etc\netc/tampered-by-dom0\n');
    });
    const pad = Buffer.alloc((4 - (cpio.length % 4)) % 4);
    return Buffer.concat([cpio, pad, initrd]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
