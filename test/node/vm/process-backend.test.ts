// Process VMs through the real hypervisor (software TPM) with real node, sshd, ssh and
// ssh-keygen: the host key travels only on the VM channel; a stock `ssh` client logs in
// with StrictHostKeyChecking=yes through a plain known_hosts line and, after the host
// certificate is installed, through `@cert-authority` alone; what runs is the measured
// image; destroying a VM leaves no process, port or file behind.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { issueHostCertificate } from '../../../src/crypto/ssh-certificates.js';
import { formatSshPublicKey } from '../../../src/crypto/ssh-keys.js';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { defaultGuestImage, vmProcesses } from '../../../src/node/vm/process/index.js';
import { requireCommand, tempDir } from '../../support/system.js';
import { bootProcessNodeWithKey, closeProcessNode, guestVariant, portIsFree, run, ssh, type ClientKey, type ProcessNode } from './support.js';

const BOOT_TIMEOUT_MS = 20_000;

function sshCa(): { privateKey: ReturnType<typeof generateKeyPairSync>['privateKey']; line: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, line: formatSshPublicKey(publicKey) };
}

void describe('process VMs', () => {
  let pn: ProcessNode;
  let key: ClientKey;

  before(async () => ({ pn, key } = await bootProcessNodeWithKey()));
  after(() => closeProcessNode(pn, key));

  async function boot(name: string, image: Uint8Array = defaultGuestImage()) {
    const info = await pn.node.dom0.buildVm({ name, image, guest: { hostname: `${name}.test`, authorizedKeys: [key.publicKey] } });
    await pn.node.dom0.startVm(info.vmId);
    const report = await pn.mini.waitForVmReport(info.vmId, BOOT_TIMEOUT_MS);
    await pn.backend.waitForGuest(info.vmId, 'ready', BOOT_TIMEOUT_MS);
    const endpoint = pn.backend.endpoint(info.vmId);
    assert.ok(endpoint);
    return { info, report, endpoint };
  }

  void it('reports the host key on the channel only; a strict ssh client logs in with it', async () => {
    const { info, report, endpoint } = await boot('vm-a');
    assert.match(report.sshHostKey, /^ssh-ed25519 [A-Za-z0-9+/]+={0,2}$/);
    assert.equal(report.kernelDigest, sha256Digest(defaultGuestImage()));
    assert.equal(pn.node.dom0.vm(info.vmId).sshPort, endpoint.sshPort, 'dom0 sees the port from the ready message');
    const consoleText = pn.backend.console(info.vmId) ?? '';
    assert.match(consoleText, /host key generated and sent on the VM channel/);
    assert.ok(!consoleText.includes(report.sshHostKey.split(' ')[1] as string), 'the host key never reaches the console');
    assert.ok(!consoleText.includes('PRIVATE KEY'));

    const knownHosts = `[127.0.0.1]:${endpoint.sshPort} ${report.sshHostKey}\n`;
    const ok = await ssh({ port: endpoint.sshPort, key, knownHosts, command: 'echo logged-in-$((6 * 7)); echo "$TRUSTLAUNCH_VM_MARKER"' });
    assert.equal(ok.status, 0, ok.stderr);
    const [line1, marker] = ok.stdout.trim().split('\n');
    assert.equal(line1, 'logged-in-42');
    assert.equal(marker, pn.backend.inspect(info.vmId)?.marker, 'sessions carry the VM marker');

    // The oracle can fail: another key for the same host is refused.
    const other = `[127.0.0.1]:${endpoint.sshPort} ${formatSshPublicKey(generateKeyPairSync('ed25519').publicKey)}\n`;
    const refused = await ssh({ port: endpoint.sshPort, key, knownHosts: other, command: 'echo no' });
    assert.equal(refused.status, 255);
    assert.match(refused.stderr, /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
    assert.equal(refused.stdout, '');

    // The channel (fd 3) never reaches sshd: its fds are stdio and its own sockets only.
    const seenA = pn.backend.inspect(info.vmId);
    assert.ok(seenA);
    const sshd = vmProcesses(seenA).filter((p) => p.pid !== pn.backend.inspect(info.vmId)?.guestPid);
    const guestChannel = readlinkSync(`/proc/${pn.backend.inspect(info.vmId)?.guestPid}/fd/3`);
    assert.match(guestChannel, /^socket:/);
    for (const p of sshd) {
      let fds: string[] = [];
      try {
        fds = (await import('node:fs')).readdirSync(`/proc/${p.pid}/fd`).map((fd) => readlinkSync(`/proc/${p.pid}/fd/${fd}`));
      } catch {
        continue;
      }
      assert.ok(!fds.includes(guestChannel), `process ${p.pid} holds the VM channel`);
    }
    await pn.node.dom0.destroyVm(info.vmId);
  });

  void it('installs the CA host certificate; ssh trusting only @cert-authority logs in, another CA is refused', async () => {
    const { info, report, endpoint } = await boot('vm-cert');
    const ca = sshCa();
    const now = Date.now();
    const certificate = issueHostCertificate({ caPrivateKey: ca.privateKey, hostKey: report.sshHostKey, principals: ['vm-cert.test'], keyId: 'vm-cert', validAfter: new Date(now - 60_000), validBefore: new Date(now + 3_600_000) });
    pn.mini.sendHostCertificate(info.vmId, certificate);
    await pn.backend.waitForGuest(info.vmId, 'certificate-installed', BOOT_TIMEOUT_MS);

    const trusted = await ssh({ port: endpoint.sshPort, key, knownHosts: `@cert-authority vm-cert.test ${ca.line}\n`, hostKeyAlias: 'vm-cert.test', command: 'echo via-ca' });
    assert.equal(trusted.status, 0, trusted.stderr);
    assert.equal(trusted.stdout.trim(), 'via-ca');

    const otherCa = sshCa();
    const refused = await ssh({ port: endpoint.sshPort, key, knownHosts: `@cert-authority vm-cert.test ${otherCa.line}\n`, hostKeyAlias: 'vm-cert.test', command: 'echo no' });
    assert.equal(refused.status, 255);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /Host key verification failed/);
    await pn.node.dom0.destroyVm(info.vmId);
  });

  void it('drops a certificate for another key, a user certificate or garbage; sshd keeps serving the plain key', async () => {
    const { info, report, endpoint } = await boot('vm-badcert');
    const ca = sshCa();
    const now = Date.now();
    const validity = { validAfter: new Date(now - 60_000), validBefore: new Date(now + 3_600_000) };
    const foreignKey = formatSshPublicKey(generateKeyPairSync('ed25519').publicKey);
    pn.mini.sendHostCertificate(info.vmId, issueHostCertificate({ caPrivateKey: ca.privateKey, hostKey: foreignKey, principals: ['vm-badcert.test'], keyId: 'x', ...validity }));
    pn.mini.sendHostCertificate(info.vmId, 'ssh-ed25519-cert-v01@openssh.com AAAAnot-base64!');
    pn.mini.sendHostCertificate(info.vmId, `${report.sshHostKey}`);
    pn.mini.sendHostCertificate(info.vmId, await userCertificate(report.sshHostKey));
    await waitUntil(() => (pn.backend.console(info.vmId)?.match(/dropped a channel line/g) ?? []).length >= 4);
    const consoleText = pn.backend.console(info.vmId) ?? '';
    assert.match(consoleText, /host-certificate: certifies another key/);
    assert.match(consoleText, /host-certificate: not an ssh-ed25519 certificate line/);
    assert.match(consoleText, /host-certificate: not a valid host certificate/);
    await assert.rejects(pn.backend.waitForGuest(info.vmId, 'certificate-installed', 300), (e) => isTrustlaunchError(e, 'TIMEOUT'));
    const viaCa = await ssh({ port: endpoint.sshPort, key, knownHosts: `@cert-authority vm-badcert.test ${ca.line}\n`, hostKeyAlias: 'vm-badcert.test', command: 'true' });
    assert.equal(viaCa.status, 255, 'no certificate was installed');
    const plain = await ssh({ port: endpoint.sshPort, key, knownHosts: `[127.0.0.1]:${endpoint.sshPort} ${report.sshHostKey}\n`, command: 'echo still-here' });
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(plain.stdout.trim(), 'still-here');
    await pn.node.dom0.destroyVm(info.vmId);
  });

  void it('two boots of the same image generate two different host keys on two ports', async () => {
    const a = await boot('vm-two-a');
    const b = await boot('vm-two-b');
    assert.equal(a.report.kernelDigest, b.report.kernelDigest);
    assert.notEqual(a.report.sshHostKey, b.report.sshHostKey);
    assert.notEqual(a.endpoint.sshPort, b.endpoint.sshPort);
    await pn.node.dom0.destroyVm(a.info.vmId);
    await pn.node.dom0.destroyVm(b.info.vmId);
  });

  void it('destroy leaves no process (by pid and by marker), no port, no directory — even with a session open', async () => {
    const { info, report, endpoint } = await boot('vm-gone');
    const seen = pn.backend.inspect(info.vmId);
    assert.ok(seen);
    // A long session: sshd gives it a session of its own, outside the guest's process group.
    const session = ssh({ port: endpoint.sshPort, key, knownHosts: `[127.0.0.1]:${endpoint.sshPort} ${report.sshHostKey}\n`, command: 'sleep 120', timeoutMs: 60_000 });
    await waitUntil(() => vmProcesses(seen).some((p) => commandOf(p.pid).startsWith('sleep')));
    const before = vmProcesses(seen);
    assert.ok(before.some((p) => commandOf(p.pid).startsWith('sleep')), 'the session command belongs to the VM');
    assert.equal(await portIsFree(endpoint.sshPort), false);

    await pn.node.dom0.destroyVm(info.vmId);
    assert.equal(pn.node.dom0.vm(info.vmId).state, 'destroyed');
    assert.deepEqual(vmProcesses(seen), [], 'no process carries the marker');
    for (const p of before) assert.ok(!isAlive(p.pid, p.startTime), `process ${p.pid} survived`);
    assert.equal(await portIsFree(endpoint.sshPort), true, 'the port is free');
    assert.equal(existsSync(seen.dir), false, 'the runtime directory (with the private key) is gone');
    assert.equal(pn.backend.endpoint(info.vmId), undefined);
    const s = await session;
    assert.notEqual(s.status, 0, 'the session ended with the VM');
    assert.match(pn.backend.console(info.vmId) ?? '', /SIGTERM; stopping/);
  });

  void it('runs the measured bytes: changing the image on disk (or dom0 buffer) after measurement changes nothing', async () => {
    const dir = tempDir('tl-img-');
    try {
      const file = join(dir.path, 'guest.mjs');
      const measuredImage = guestVariant('measured');
      const swapped = guestVariant('swapped');
      writeFileSync(file, measuredImage);
      const fromDisk = readFileSync(file); // what dom0 reads and hands over
      const info = await pn.node.dom0.buildVm({ name: 'vm-toctou', image: fromDisk, guest: { hostname: 'vm-toctou.test', authorizedKeys: [key.publicKey] } });
      // dom0 swaps both the file and its own buffer after the measurement.
      writeFileSync(file, swapped);
      swapped.copy(fromDisk, 0, 0, Math.min(swapped.length, fromDisk.length));
      await pn.node.dom0.startVm(info.vmId);
      await pn.backend.waitForGuest(info.vmId, 'ready', BOOT_TIMEOUT_MS);
      assert.equal(info.kernelDigest, sha256Digest(measuredImage));
      await waitUntil(() => /variant /.test(pn.backend.console(info.vmId) ?? ''));
      const consoleText = pn.backend.console(info.vmId) ?? '';
      assert.match(consoleText, /variant measured/);
      assert.doesNotMatch(consoleText, /variant swapped/);
      // No file is run: the code came on stdin, a pipe.
      const pid = pn.backend.inspect(info.vmId)?.guestPid;
      assert.equal(readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').slice(1, 3).join(' '), '--input-type=module -');
      assert.match(readlinkSync(`/proc/${pid}/fd/0`), /^(pipe|socket):\[/, 'stdin is a pipe, not a file');
      await pn.node.dom0.destroyVm(info.vmId);
    } finally {
      dir.dispose();
    }
  });

  void it('a guest that exits on its own is destroyed and cleaned up', async () => {
    const { info } = await boot('vm-crash');
    const seen = pn.backend.inspect(info.vmId);
    assert.ok(seen);
    process.kill(seen.guestPid, 'SIGKILL'); // its sshd is left to the sweep
    await waitUntil(() => pn.node.dom0.vm(info.vmId).state === 'destroyed');
    await waitUntil(() => pn.backend.endpoint(info.vmId) === undefined && vmProcesses(seen).length === 0);
    await waitUntil(() => !existsSync(seen.dir));
    assert.equal(await portIsFree(seen.sshPort), true);
  });
});

/** A *user* certificate for `publicKey`, made by ssh-keygen (which is what a confused CA would hand out). */
async function userCertificate(publicKey: string): Promise<string> {
  const dir = tempDir('tl-usercert-');
  try {
    writeFileSync(join(dir.path, 'key.pub'), `${publicKey}\n`);
    const keygen = requireCommand('ssh-keygen');
    assert.equal((await run(keygen, ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir.path, 'ca')])).status, 0);
    const signed = await run(keygen, ['-q', '-s', join(dir.path, 'ca'), '-I', 'user', '-n', 'root', join(dir.path, 'key.pub')]);
    assert.equal(signed.status, 0, signed.stderr);
    return readFileSync(join(dir.path, 'key-cert.pub'), 'utf8').trim();
  } finally {
    dir.dispose();
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1');
  } catch {
    return '';
  }
}

function isAlive(pid: number, startTime: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return f[19] === startTime && f[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${condition.toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
