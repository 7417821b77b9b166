// guest/qemu/rootfs/usr/lib/trustlaunch/certificate.sh, run by the busybox the guest image
// ships (/bin/busybox from busybox-static) with the OpenSSH ssh-keygen the image copies
// from this host: `key_fingerprint` must print exactly what `ssh-keygen -lf` prints, and
// `certified_key` must name the certified key of a genuine Ed25519 host certificate and
// print nothing for anything else — a user certificate, a forged signature, a plain key,
// a certificate whose key ID or principals imitate the lines that count.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { requireCommand, tempDir } from '../support/system.js';
import { makeKeyPair, signHostCertificate, type SshKeyPair } from './openssh.js';

const LIB = fileURLToPath(new URL('../../guest/qemu/rootfs/usr/lib/trustlaunch/certificate.sh', import.meta.url));
const BUSYBOX = '/bin/busybox';

/** Runs `fn FILE` of certificate.sh under busybox sh; its stdout (the fingerprint, or ''). */
function shell(fn: 'key_fingerprint' | 'certified_key', file: string): string {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: apt-get install busybox-static (scripts/setup-system.sh)`);
  requireCommand('ssh-keygen');
  const r = spawnSync(BUSYBOX, ['sh', '-c', `. "$1"; ${fn} "$2"`, 'sh', LIB, file], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
  assert.equal(r.stderr, '', `${fn} writes nothing to stderr`);
  return r.stdout;
}

/** `ssh-keygen -lf FILE`'s fingerprint (the oracle). */
function fingerprintOf(file: string): string {
  return execFileSync(requireCommand('ssh-keygen'), ['-l', '-f', file], { encoding: 'utf8' }).split(' ')[1] as string;
}

let tmp: { path: string; dispose: () => void };
let ca: SshKeyPair;
let host: SshKeyPair;

before(() => {
  tmp = tempDir('tl-cert-sh-');
  ca = makeKeyPair(tmp.path, 'ca');
  host = makeKeyPair(tmp.path, 'host');
});
after(() => tmp.dispose());

const file = (name: string, text: string): string => {
  const path = join(tmp.path, name);
  writeFileSync(path, `${text}\n`);
  return path;
};

void describe('certificate.sh (the QEMU guest checks its host certificate)', () => {
  void it('key_fingerprint equals ssh-keygen -lf for fresh Ed25519 keys', () => {
    for (let i = 0; i < 12; i++) {
      const key = makeKeyPair(tmp.path, `k${i}`);
      const expected = fingerprintOf(`${key.privatePath}.pub`);
      assert.match(expected, /^SHA256:[A-Za-z0-9+/]{43}$/);
      assert.equal(shell('key_fingerprint', `${key.privatePath}.pub`), `${expected}\n`);
    }
  });

  void it('certified_key names the key of a genuine host certificate', () => {
    const cert = file('genuine-cert.pub', signHostCertificate({ dir: tmp.path, ca, hostKey: host.publicLine, principal: 'vm-1.example' }));
    assert.equal(shell('certified_key', cert), `${fingerprintOf(`${host.privatePath}.pub`)}\n`);
    // What the guest compares: the certified key's fingerprint and its own, computed by the two functions.
    assert.equal(shell('certified_key', cert), shell('key_fingerprint', `${host.privatePath}.pub`));
  });

  void it('certified_key prints nothing for a user certificate, a forged one, a plain key, or other bytes', () => {
    const userKey = file('user.pub', host.publicLine);
    execFileSync(requireCommand('ssh-keygen'), ['-q', '-s', ca.privatePath, '-I', 'user', '-n', 'root', userKey]);
    assert.equal(shell('certified_key', join(tmp.path, 'user-cert.pub')), '', 'a user certificate is not a host certificate');

    const genuine = signHostCertificate({ dir: tmp.path, ca, hostKey: host.publicLine, principal: 'vm-1.example' });
    const [type, blob] = genuine.split(' ') as [string, string];
    const bytes = Buffer.from(blob, 'base64');
    for (const at of [bytes.length - 1, 60, 100]) {
      const forged = Buffer.from(bytes);
      forged[at] = (forged[at] as number) ^ 1;
      assert.equal(shell('certified_key', file(`forged-${at}.pub`, `${type} ${forged.toString('base64')}`)), '', `a bit flipped at byte ${at}`);
    }
    assert.equal(shell('certified_key', `${host.privatePath}.pub`), '', 'a plain key');
    assert.equal(shell('certified_key', file('junk.pub', 'ssh-ed25519-cert-v01@openssh.com AAAA')), '');
    assert.equal(shell('certified_key', join(tmp.path, 'missing.pub')), '');

    const ecdsa = join(tmp.path, 'ecdsa');
    execFileSync(requireCommand('ssh-keygen'), ['-q', '-t', 'ecdsa', '-N', '', '-C', '', '-f', ecdsa]);
    execFileSync(requireCommand('ssh-keygen'), ['-q', '-s', ca.privatePath, '-I', 'h', '-h', '-n', 'vm-1.example', `${ecdsa}.pub`]);
    assert.equal(shell('certified_key', `${ecdsa}-cert.pub`), '', 'only Ed25519 host certificates');
  });

  void it('certified_key reads only the fixed lines: a key ID or principal imitating them changes nothing', () => {
    const other = makeKeyPair(tmp.path, 'other');
    const otherFp = fingerprintOf(`${other.privatePath}.pub`);
    // A user certificate whose key ID and principals carry the host certificate's lines.
    const fake = `x\n        Type: ssh-ed25519-cert-v01@openssh.com host certificate\n        Public key: ED25519-CERT ${otherFp}`;
    const userKey = file('user2.pub', other.publicLine);
    execFileSync(requireCommand('ssh-keygen'), ['-q', '-s', ca.privatePath, '-I', fake, '-n', `root,Public key: ED25519-CERT ${otherFp}`, userKey]);
    assert.equal(shell('certified_key', join(tmp.path, 'user2-cert.pub')), '');
    // A host certificate for `host` whose key ID names another key: the certified key counts.
    const cert = file('id-cert.pub', signHostCertificate({ dir: tmp.path, ca, hostKey: host.publicLine, principal: 'vm-1.example', identity: `Public key: ED25519-CERT ${otherFp}` }));
    assert.equal(shell('certified_key', cert), `${fingerprintOf(`${host.privatePath}.pub`)}\n`);
  });
});
