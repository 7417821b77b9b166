// Measures the QEMU guest's boot (not a test: timings belong in measurements, not asserts).
//   node --import tsx test/guest/measure-boot.ts [--runs N] [--accel kvm|tcg] [--image DIR] [--console]
// For each run: QEMU spawn -> `host-key` on the VM channel -> config sent -> `ready` ->
// first successful `ssh … true` with strict host key checking. Prints each run and the
// median/min/max (--console: also the guest's console timeline of the last run).
// docs/guest-image.md records the figures.
import { parseArgs } from 'node:util';
import { ensureGuestImage, pickAccelerator, readGuestImage, startGuest, type Accelerator } from '../support/qemu.js';
import { tempDir } from '../support/system.js';
import { keyWithoutComment, makeKeyPair, sshRun } from './openssh.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, accel: { type: 'string' }, image: { type: 'string' }, console: { type: 'boolean', default: false } } });
const runs = Number(values.runs);
const image = values.image === undefined ? ensureGuestImage() : readGuestImage(values.image);
const accel = values.accel === undefined ? await pickAccelerator(image) : { accel: values.accel as Accelerator, reason: 'requested' };
console.log(`image ${image.dir}; accelerator ${accel.accel} (${accel.reason})`);

const tmp = tempDir('tl-measure-');
const client = makeKeyPair(tmp.path, 'client');
const samples: Record<'hostKey' | 'ready' | 'ssh', number[]> = { hostKey: [], ready: [], ssh: [] };
try {
  for (let i = 0; i < runs; i++) {
    const guest = await startGuest({ image, accel: accel.accel });
    try {
      const channel = await guest.openChannel();
      const hostKey = String((await channel.waitFor('host-key', 120_000)).message['key']);
      const tHostKey = performance.now() - guest.startedAt;
      channel.send({ v: 1, type: 'config', hostname: 'measure.guest', authorizedKeys: [keyWithoutComment(client.publicLine)], sshPort: 22 });
      await channel.waitFor('ready', 60_000);
      const tReady = performance.now() - guest.startedAt;
      const r = await sshRun({ dir: tmp.path, port: guest.sshPort, identity: client, knownHosts: [`measure.guest ${hostKey}`], hostKeyAlias: 'measure.guest', command: 'true' });
      if (r.status !== 0) throw new Error(`ssh failed: ${r.stderr}`);
      const tSsh = performance.now() - guest.startedAt;
      samples.hostKey.push(tHostKey);
      samples.ready.push(tReady);
      samples.ssh.push(tSsh);
      console.log(`run ${i + 1}: host-key ${ms(tHostKey)}  ready ${ms(tReady)}  ssh ${ms(tSsh)}`);
      if (values.console && i === runs - 1) console.log(guest.console().split('\n').filter((l) => l.includes('trustlaunch-guest:')).join('\n'));
    } finally {
      await guest.stop();
    }
  }
} finally {
  tmp.dispose();
}
for (const [name, xs] of Object.entries(samples)) {
  const sorted = [...xs].sort((a, b) => a - b);
  console.log(`${name}: median ${ms(sorted[Math.floor(sorted.length / 2)] ?? NaN)}  min ${ms(sorted[0] ?? NaN)}  max ${ms(sorted.at(-1) ?? NaN)}`);
}

function ms(x: number): string {
  return `${(x / 1000).toFixed(2)} s`;
}
