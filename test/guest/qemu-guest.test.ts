// The QEMU guest under real QEMU (KVM when it really works, TCG otherwise): the host key
// travels only on the VM channel, the config is applied once and only when valid, sshd
// serves the stock ssh client trusted by a plain known_hosts line or by the CA's
// @cert-authority line after the certificate went in, and stopping leaves nothing behind.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ensureGuestImage, pgrepMarker, pickAccelerator, processExists, startGuest, type ChannelClient, type GuestImage, type QemuGuest } from '../support/qemu.js';
import { tempDir } from '../support/system.js';
import { certAuthorityLine, keyWithoutComment, makeKeyPair, signHostCertificate, sshRun, type SshKeyPair } from './openssh.js';

const BOOT_MS = 180_000; // TCG on a loaded 2-core machine; typically 2-4 s
const STEP_MS = 60_000;
const HOSTNAME = 'vm-1.guest.test';
const HOST_KEY_LINE = /^ssh-ed25519 [A-Za-z0-9+/]+={0,3}$/;

let image: GuestImage;
let tmp: { path: string; dispose: () => void };
let client: SshKeyPair;
let ca: SshKeyPair;
let otherCa: SshKeyPair;

before(async () => {
  image = ensureGuestImage();
  const accel = await pickAccelerator(image);
  console.log(`# QEMU accelerator: ${accel.accel} (${accel.reason})`);
  tmp = tempDir('tl-guest-test-');
  client = makeKeyPair(tmp.path, 'client');
  ca = makeKeyPair(tmp.path, 'ca');
  otherCa = makeKeyPair(tmp.path, 'other-ca');
});
after(() => tmp.dispose());

async function hostKeyOf(guest: QemuGuest, channel: ChannelClient): Promise<string> {
  const { message, skipped } = await channel.waitFor('host-key', BOOT_MS);
  assert.deepEqual(skipped, [], 'host-key is the first message');
  const key = message['key'];
  assert.ok(typeof key === 'string' && HOST_KEY_LINE.test(key), `host-key carries "ssh-ed25519 <base64>": ${String(key)}`);
  const blob = key.split(' ')[1] as string;
  assert.match(guest.console(), /host key generated/);
  assert.ok(!guest.console().includes(blob), 'the host key never appears on the serial console');
  return key;
}

const config = (hostname: string, keys: readonly unknown[]): Record<string, unknown> => ({ v: 1, type: 'config', hostname, authorizedKeys: keys, sshPort: 22 });

async function expectDropped(channel: ChannelClient, reasons: readonly RegExp[]): Promise<void> {
  for (const reason of reasons) {
    const m = await channel.next(STEP_MS);
    assert.equal(m.type, 'log', `expected a log message for a dropped line, got ${JSON.stringify(m)}`);
    assert.match(String(m['message']), reason);
  }
}

void describe('QEMU guest', () => {
  void it('reports its key on the channel only, applies one valid config, and serves ssh trusted by a key line or by the CA', async () => {
    const guest = await startGuest({ image });
    try {
      const channel = await guest.openChannel();
      const hostKey = await hostKeyOf(guest, channel);
      const clientKey = keyWithoutComment(client.publicLine);

      // Hostile or malformed lines first: each is dropped with a reason and changes nothing.
      const valid = JSON.stringify(config(HOSTNAME, [clientKey]));
      channel.sendRaw('this is not json\n');
      channel.sendRaw(`${valid} trailing\n`);
      channel.sendRaw(`${JSON.stringify({ ...config(HOSTNAME, [clientKey]), v: 2 })}\n`);
      channel.sendRaw(`${JSON.stringify(config('evil;reboot', [clientKey]))}\n`);
      channel.sendRaw(`${JSON.stringify(config(HOSTNAME, [`${clientKey}\nssh-ed25519 AAAAinjected`]))}\n`); // escape -> malformed
      channel.sendRaw(`${JSON.stringify(config(HOSTNAME, ['command=reboot ssh-ed25519 AAAA']))}\n`);
      channel.sendRaw(`${JSON.stringify({ ...config(HOSTNAME, [clientKey]), sshPort: 70000 })}\n`);
      channel.sendRaw(`{"v":1,"type":"config","hostname":"${HOSTNAME}","hostname":"other.test","authorizedKeys":[],"sshPort":22}\n`);
      channel.sendRaw(`${JSON.stringify({ ...config(HOSTNAME, [clientKey]), v: '1' })}\n`); // JSON types count
      channel.sendRaw(`${JSON.stringify({ ...config(HOSTNAME, [clientKey]), sshPort: '22' })}\n`);
      channel.sendRaw(`${JSON.stringify(config(HOSTNAME, [clientKey, 7]))}\n`);
      channel.sendRaw('{"v":1,"type":"some-future-message","x":[1,2]}\n'); // unknown type: ignored silently
      await expectDropped(channel, [
        /malformed line/, /malformed line/, /unsupported or missing v/, /config: invalid hostname/, /malformed line/,
        /config: invalid authorized key/, /config: invalid sshPort/, /malformed line/,
        /unsupported or missing v/, /config: invalid sshPort/, /config: invalid authorized key/,
      ]);

      channel.send(config(HOSTNAME, [clientKey]));
      const { message: ready, skipped } = await channel.waitFor('ready', STEP_MS);
      assert.deepEqual(skipped, []);
      assert.equal(ready['sshPort'], 22);

      // A second config (another user's key) is refused: the first valid one stands.
      const intruder = makeKeyPair(tmp.path, 'intruder');
      channel.send(config('intruder.test', [keyWithoutComment(intruder.publicLine)]));
      await expectDropped(channel, [/config already applied/]);

      const plain = [`${HOSTNAME} ${hostKey}`];
      const login = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: client, knownHosts: plain, hostKeyAlias: HOSTNAME, command: 'cat /proc/version; hostname' });
      assert.equal(login.status, 0, login.stderr);
      const [version, hostname] = login.stdout.trim().split('\n');
      assert.match(version ?? '', /^Linux version \S+-cloud-amd64 /);
      assert.equal(hostname, HOSTNAME);
      const refused = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: intruder, knownHosts: plain, hostKeyAlias: HOSTNAME, command: 'true' });
      assert.equal(refused.status, 255);
      assert.match(refused.stderr, /Permission denied/);

      // Before the certificate, the CA line alone does not let ssh trust the guest.
      const caOnly = [certAuthorityLine(HOSTNAME, ca)];
      const early = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: client, knownHosts: caOnly, hostKeyAlias: HOSTNAME, command: 'true' });
      assert.equal(early.status, 255);
      assert.match(early.stderr, /Host key verification failed/);

      // A certificate for another key, or a forged one, is refused and not installed.
      const strangerKey = keyWithoutComment(makeKeyPair(tmp.path, 'stranger').publicLine);
      channel.send({ v: 1, type: 'host-certificate', certificate: signHostCertificate({ dir: tmp.path, ca, hostKey: strangerKey, principal: HOSTNAME }) });
      const genuine = signHostCertificate({ dir: tmp.path, ca, hostKey, principal: HOSTNAME });
      const [certType, certBlob] = genuine.split(' ') as [string, string];
      const forged = Buffer.from(certBlob, 'base64');
      forged[forged.length - 1] = (forged.at(-1) as number) ^ 1; // flips a bit of the CA signature
      channel.send({ v: 1, type: 'host-certificate', certificate: `${certType} ${forged.toString('base64')}` });
      await expectDropped(channel, [/host-certificate: certifies another key/, /host-certificate: not a valid host certificate/]);

      channel.send({ v: 1, type: 'host-certificate', certificate: genuine });
      const installed = await channel.waitFor('certificate-installed', STEP_MS);
      assert.deepEqual(installed.skipped, []);

      const viaCa = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: client, knownHosts: caOnly, hostKeyAlias: HOSTNAME, command: 'cat /proc/version' });
      assert.equal(viaCa.status, 0, viaCa.stderr);
      assert.match(viaCa.stdout, /^Linux version /);
      const viaKey = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: client, knownHosts: plain, hostKeyAlias: HOSTNAME, command: 'cat /proc/version' });
      assert.equal(viaKey.status, 0, viaKey.stderr);
      const viaOtherCa = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: client, knownHosts: [certAuthorityLine(HOSTNAME, otherCa)], hostKeyAlias: HOSTNAME, command: 'true' });
      assert.equal(viaOtherCa.status, 255);
      assert.match(viaOtherCa.stderr, /Host key verification failed/);
      const wrongName = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: client, knownHosts: [certAuthorityLine('*', ca)], hostKeyAlias: 'vm-2.guest.test', command: 'true' });
      assert.equal(wrongName.status, 255, 'the certificate names only its own principal');

      assert.equal(channel.malformed, 0, 'the guest sends only well-formed lines');
      assert.ok(!guest.console().includes(hostKey.split(' ')[1] as string), 'the host key never appears on the serial console');
    } finally {
      await guest.stop();
    }
  });

  void it('makes a fresh host key at every boot, takes a certificate sent before the config, survives a reconnect, and leaves no QEMU behind', async () => {
    const guests = await Promise.all([startGuest({ image }), startGuest({ image })]);
    try {
      const channels = await Promise.all(guests.map((g) => g.openChannel()));
      const keys = await Promise.all(guests.map((g, i) => hostKeyOf(g, channels[i] as ChannelClient)));
      assert.notEqual(keys[0], keys[1], 'two boots of one image give two host keys');

      const [guest, channel, hostKey] = [guests[0], channels[0] as ChannelClient, keys[0] as string];
      channel.send({ v: 1, type: 'host-certificate', certificate: signHostCertificate({ dir: tmp.path, ca, hostKey, principal: HOSTNAME }) });
      channel.send(config(HOSTNAME, [keyWithoutComment(client.publicLine)]));
      assert.equal((await channel.next(STEP_MS)).type, 'ready');
      assert.equal((await channel.next(STEP_MS)).type, 'certificate-installed');
      const viaCa = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: client, knownHosts: [certAuthorityLine('*.guest.test', ca)], hostKeyAlias: HOSTNAME, command: 'hostname' });
      assert.equal(viaCa.status, 0, viaCa.stderr);
      assert.equal(viaCa.stdout.trim(), HOSTNAME);

      // The hypervisor may drop the channel and come back: the guest carries on.
      const [, second] = guests;
      (channels[1] as ChannelClient).close();
      const again = await second.openChannel();
      again.send(config('vm-2.guest.test', []));
      assert.deepEqual(await again.next(STEP_MS), { v: 1, type: 'ready', sshPort: 22 });
    } finally {
      await Promise.all(guests.map((g) => g.stop()));
    }
    for (const g of guests) {
      assert.ok(!processExists(g.pid), `QEMU pid ${g.pid} is gone`);
      assert.deepEqual(pgrepMarker(g.marker), [], `no process has ${g.marker} in its command line`);
    }
  });
});
