// The real OpenSSH tools, as the guest tests (and the QEMU backend's tests) use them:
// ssh-keygen for keys and host certificates, ssh for logging in with strict host key
// checking against a known_hosts file we write ourselves.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireCommand } from '../support/system.js';

export interface SshKeyPair {
  /** Path of the private key (mode 0600, written by ssh-keygen). */
  readonly privatePath: string;
  /** The public key line `ssh-ed25519 AAAA… comment`. */
  readonly publicLine: string;
}

/** A fresh Ed25519 key pair in `dir`. */
export function makeKeyPair(dir: string, name: string): SshKeyPair {
  const privatePath = join(dir, name);
  execFileSync(requireCommand('ssh-keygen'), ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', privatePath]);
  return { privatePath, publicLine: readFileSync(`${privatePath}.pub`, 'utf8').trim() };
}

/** `type base64` of a public key line (what the VM channel carries). */
export function keyWithoutComment(line: string): string {
  const [type, blob] = line.trim().split(/\s+/);
  if (type === undefined || blob === undefined) throw new Error(`not a public key line: ${line}`);
  return `${type} ${blob}`;
}

/** Signs `hostKey` (a public key line) as an OpenSSH host certificate for `principal` with `ca`. */
export function signHostCertificate(o: { dir: string; ca: SshKeyPair; hostKey: string; principal: string; identity?: string }): string {
  const keyPath = join(o.dir, `host-${Date.now()}-${Math.random().toString(16).slice(2)}.pub`);
  writeFileSync(keyPath, `${o.hostKey}\n`);
  execFileSync(requireCommand('ssh-keygen'), ['-q', '-s', o.ca.privatePath, '-I', o.identity ?? o.principal, '-h', '-n', o.principal, '-V', '-5m:+1h', keyPath]);
  return readFileSync(keyPath.replace(/\.pub$/, '-cert.pub'), 'utf8').trim();
}

/** A known_hosts line trusting every host certificate `ca` signs for `pattern`. */
export const certAuthorityLine = (pattern: string, ca: SshKeyPair): string => `@cert-authority ${pattern} ${keyWithoutComment(ca.publicLine)}`;

export interface SshResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `command` on root@127.0.0.1:<port> with the stock ssh client, trusting only the
 * lines of `knownHosts` (no global file, no user config), checking the host as `hostKeyAlias`.
 * Status 255 means ssh itself failed (e.g. "Host key verification failed").
 */
export function sshRun(o: { dir: string; port: number; identity: SshKeyPair; knownHosts: readonly string[]; hostKeyAlias: string; command: string; timeoutMs?: number }): Promise<SshResult> {
  const knownHostsFile = join(o.dir, `known_hosts-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  writeFileSync(knownHostsFile, o.knownHosts.map((l) => `${l}\n`).join(''), { mode: 0o600 });
  const args = [
    '-F', '/dev/null',
    '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHostsFile}`, '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', `HostKeyAlias=${o.hostKeyAlias}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=20',
    '-i', o.identity.privatePath, '-p', String(o.port), 'root@127.0.0.1', o.command,
  ];
  return new Promise((resolve) => {
    execFile(requireCommand('ssh'), args, { timeout: o.timeoutMs ?? 60_000, encoding: 'utf8' }, (error, stdout, stderr) => {
      const status = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ status, stdout, stderr });
    });
  });
}
