// The user's login key for VMs (docs/client.md "Login key"). First found wins:
//   --ssh-key FILE (a public key; its private half is FILE without .pub, when present)
//   the settings' sshKey (CONFIG/config.json)
//   ~/.ssh/id_ed25519.pub, ~/.ssh/id_ecdsa.pub
//   CONFIG/id_ed25519(.pub), generated with ssh-keygen on first use (no passphrase, 0600)
// Only Ed25519 and ECDSA P-256 keys are accepted (what the VM's authorized_keys takes).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { formatSshPublicKey, parseSshPublicKey } from '../crypto/ssh-keys.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { ensureClientDir, type ClientPaths } from './paths.js';

export interface LoginKey {
  /** `type base64` (no comment): what the VM is asked to authorize. */
  readonly publicKey: string;
  readonly publicKeyFile: string;
  /** The private key file for `ssh -i`, when it sits next to the public one. */
  readonly privateKeyFile: string | undefined;
  readonly source: 'flag' | 'settings' | 'home' | 'generated';
}

async function readKey(file: string, source: LoginKey['source']): Promise<LoginKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new TrustlaunchError('MALFORMED_REQUEST', `cannot read the SSH public key ${file}: ${(e as Error).message}`);
  }
  const line = text.split('\n').find((l) => l.trim() !== '') ?? '';
  const key = parseSshPublicKey(line.trim()); // MALFORMED_KEY for ssh-rsa and the like
  const privateKeyFile = file.endsWith('.pub') && existsSync(file.slice(0, -4)) ? file.slice(0, -4) : undefined;
  return { publicKey: formatSshPublicKey(key.key), publicKeyFile: file, privateKeyFile, source };
}

export async function resolveLoginKey(o: { paths: ClientPaths; flag?: string | undefined; settings?: string | undefined; home?: string }): Promise<LoginKey> {
  if (o.flag !== undefined) return readKey(o.flag, 'flag');
  if (o.settings !== undefined) return readKey(o.settings, 'settings');
  const home = o.home ?? homedir();
  for (const name of ['id_ed25519.pub', 'id_ecdsa.pub']) {
    const file = join(home, '.ssh', name);
    if (existsSync(file)) {
      try {
        return await readKey(file, 'home');
      } catch {
        // an unusable key in ~/.ssh (e.g. a security key type) is passed over
      }
    }
  }
  const generated = `${o.paths.generatedKey}.pub`;
  if (!existsSync(generated)) await generate(o.paths);
  return readKey(generated, 'generated');
}

async function generate(paths: ClientPaths): Promise<void> {
  await ensureClientDir(paths);
  await new Promise<void>((resolve, reject) => {
    execFile('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'trustlaunch', '-f', paths.generatedKey], { timeout: 30_000 }, (error) => {
      if (error === null) resolve();
      else reject(new TrustlaunchError('INTERNAL', `ssh-keygen could not generate ${paths.generatedKey}: ${error.message}`));
    });
  });
}
