// Helpers shared by the crypto tests: run real tools (openssl, swtpm_setup) as oracles.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireCommand } from '../support/system.js';

export interface ToolResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (bounded by a timeout) and returns its status and output. */
export function run(cmd: string, args: readonly string[], opts: { input?: string | Buffer; cwd?: string; env?: Record<string, string> } = {}): ToolResult {
  requireCommand(cmd);
  const env = opts.env === undefined ? process.env : { ...process.env, ...opts.env };
  const r = spawnSync(cmd, args, { input: opts.input, cwd: opts.cwd, env, encoding: 'utf8', timeout: 30_000 });
  if (r.error !== undefined) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * `openssl verify` as an oracle: does `leaf` chain to `root` through `intermediates` at
 * `time`? At `-auth_level 2` (112-bit security: no SHA-1 signatures, RSA >= 2048), the
 * policy verifyChain enforces.
 */
export function opensslVerify(dir: string, pems: { root: string; intermediates?: readonly string[]; leaf: string }, time: Date): ToolResult {
  const root = join(dir, 'oracle-root.pem');
  const untrusted = join(dir, 'oracle-untrusted.pem');
  const leaf = join(dir, 'oracle-leaf.pem');
  writeFileSync(root, pems.root);
  writeFileSync(leaf, pems.leaf);
  const args = ['verify', '-auth_level', '2', '-attime', String(Math.floor(time.getTime() / 1000)), '-CAfile', root];
  if (pems.intermediates !== undefined && pems.intermediates.length > 0) {
    writeFileSync(untrusted, pems.intermediates.join(''));
    args.push('-untrusted', untrusted);
  }
  return run('openssl', [...args, leaf]);
}

export interface SwtpmEkFiles {
  readonly rootCaPem: string;
  readonly issuerCaPem: string;
  readonly rsaEkDer: Buffer;
  readonly eccEkDer: Buffer;
}

/**
 * Manufactures a TPM with real `swtpm_setup` and a project-owned local CA in `dir`
 * (platform.md §1; nothing under /var/lib or /etc), and returns the EK certificates it
 * wrote: RSA-2048 and ECC P-384, signed by swtpm-localca under swtpm-localca-rootca.
 */
export function manufactureSwtpmEkCertificates(dir: string): SwtpmEkFiles {
  requireCommand('swtpm');
  const localca = requireCommand('swtpm_localca');
  const swtpmSetup = requireCommand('swtpm_setup');
  const ca = join(dir, 'localca');
  const state = join(dir, 'tpmstate');
  const out = join(dir, 'ekcerts');
  execFileSync('mkdir', ['-p', ca, state, out]);
  writeFileSync(join(ca, 'swtpm-localca.conf'), `statedir = ${ca}\nsigningkey = ${ca}/signkey.pem\nissuercert = ${ca}/issuercert.pem\ncertserial = ${ca}/certserial\n`);
  writeFileSync(join(ca, 'swtpm-localca.options'), '--platform-manufacturer trustlaunch-test\n--platform-version 2.1\n--platform-model test-node\n');
  writeFileSync(
    join(ca, 'swtpm_setup.conf'),
    `create_certs_tool= ${localca}\ncreate_certs_tool_config = ${ca}/swtpm-localca.conf\ncreate_certs_tool_options = ${ca}/swtpm-localca.options\nactive_pcr_banks = sha256\n`,
  );
  const r = spawnSync(swtpmSetup, ['--tpm2', '--config', join(ca, 'swtpm_setup.conf'), '--tpmstate', state, '--create-ek-cert', '--overwrite', '--write-ek-cert-files', out], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`swtpm_setup failed (${r.status}): ${r.stderr}${r.stdout}`);
  return {
    rootCaPem: readFileSync(join(ca, 'swtpm-localca-rootca-cert.pem'), 'utf8'),
    issuerCaPem: readFileSync(join(ca, 'issuercert.pem'), 'utf8'),
    rsaEkDer: readFileSync(join(out, 'ek-rsa2048.crt')),
    eccEkDer: readFileSync(join(out, 'ek-secp384r1.crt')),
  };
}
