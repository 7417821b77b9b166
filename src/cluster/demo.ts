// `trustlaunch demo`: the whole story on this machine, told as it happens. Everything runs
// for real: `up` starts a CA, a manager and two nodes in this process; the user's steps are
// the real `trustlaunch` commands, run as separate processes exactly as a person would type
// them (and printed so they can be typed again), with the real `ssh`. One attack is shown
// being caught. Every step checks its outcome; the demo exits 0 only if all went as told.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TrustlaunchError } from '../protocol/errors.js';
import { sha256Digest } from '../protocol/digest.js';
import { tamperedGuestImage } from './tampered-image.js';
import { GUEST_IMAGE_NAME, up, type RunningCluster } from './up.js';

const BIN = fileURLToPath(new URL('../../bin/trustlaunch.js', import.meta.url));

export interface DemoOptions {
  /** Where the story goes (default stdout). */
  readonly out?: (text: string) => void;
  /** Keep the temporary directory (for looking at it afterwards). */
  readonly keep?: boolean;
}

interface Ran {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

function runCli(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? (signal === null ? 1 : 128), stdout, stderr });
    });
  });
}

const indent = (text: string, prefix = '    │ '): string =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => `${prefix}${l}`)
    .join('\n');

export async function runDemo(o: DemoOptions = {}): Promise<void> {
  const out = o.out ?? ((t: string) => void process.stdout.write(`${t}\n`));
  const dir = await mkdtemp(join(tmpdir(), 'trustlaunch-demo-'));
  let cluster: RunningCluster | undefined;
  try {
    out('trustlaunch demo: launching a VM in a cloud you do not trust, and knowing what you got.');
    out(`(everything lives in ${dir} and is removed at the end)`);
    out('');

    // --- 1. the cloud -----------------------------------------------------------------
    out('1. The cloud comes up on this machine:');
    out('   - a CA, the independent party you will trust (it checks nodes and signs receipts);');
    out('   - a manager, the cloud operator\'s control plane, which you do NOT trust;');
    out('   - two nodes, each a model hypervisor with a software TPM. Each node measures its');
    out('     own boot, and its attestation agent registers the node with the CA.');
    out('   The CA allowlists the digest of the shipped guest image; the operator uploads it.');
    cluster = await up({ dir: join(dir, 'cloud'), nodes: 2, progress: (line) => out(`    │ ${line}`) });
    const c = cluster;
    out('');

    // The user's terminal: their own config directory and home, the manager's address and their token.
    const home = join(dir, 'home');
    await mkdir(home, { recursive: true, mode: 0o700 });
    const user: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: home,
      LANG: 'C',
      TRUSTLAUNCH_CONFIG_DIR: join(home, '.config', 'trustlaunch'),
      TRUSTLAUNCH_MANAGER_URL: c.summary.manager.url,
      TRUSTLAUNCH_MANAGER_CA: c.managerCaFile,
      TRUSTLAUNCH_TOKEN: c.userToken,
    };
    const shown = (args: readonly string[]): string => `   $ trustlaunch ${args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`)).join(' ')}`;
    const step = async (args: readonly string[], expect: number, env: NodeJS.ProcessEnv = user): Promise<Ran> => {
      out(shown(args));
      const r = await runCli(args, env);
      const text = [r.stderr, r.stdout].filter((t) => t.trim() !== '').join('\n');
      if (text !== '') out(indent(text));
      if (r.status !== expect) throw new TrustlaunchError('INTERNAL', `demo: \`trustlaunch ${args.join(' ')}\` exited ${r.status}, expected ${expect}`);
      return r;
    };

    // --- 2. pin the CA ------------------------------------------------------------------
    out('2. You pin the CA: you were given its fingerprint (by its operator, on a web page, on paper).');
    out('   Your client fetches the CA\'s keys and keeps them only if they have that fingerprint.');
    await step(['ca', 'trust', c.summary.ca.url, '--fingerprint', c.summary.ca.fingerprint], 0);
    out('');

    // --- 3. create a VM -------------------------------------------------------------------
    out('3. You ask the manager for a VM. Your client picks a fresh random nonce and sends it along.');
    out('   On the node, the hypervisor measures the image it boots; the VM makes an SSH host key and');
    out('   reports it to the hypervisor; the attestation agent has the TPM sign all of it with your nonce;');
    out('   the CA checks the node, the image and the nonce, and signs a receipt. Your client fetches the');
    out('   receipt from the CA (never from the manager) and checks every claim before it trusts the VM.');
    await step(['vm', 'create', '--image', GUEST_IMAGE_NAME, '--name', 'hello'], 0);
    out('');

    // --- 4. the receipt ---------------------------------------------------------------------
    out('4. The receipt, fetched again from the CA and checked again:');
    await step(['vm', 'receipt', 'hello'], 0);
    out('');

    // --- 5. ssh ---------------------------------------------------------------------------
    out('5. You log in with the ordinary ssh client, strict host key checking on: it accepts the VM only');
    out('   with the host key the CA attested (or a host certificate the CA signed for this VM).');
    const ssh = await step(['vm', 'ssh', 'hello', '--', 'echo "hello from the VM: logged in over ssh as $(id -un)"'], 0);
    if (!ssh.stdout.includes('hello from the VM')) throw new TrustlaunchError('INTERNAL', 'demo: the command did not run in the VM');
    out('');

    // --- 6. an attack ---------------------------------------------------------------------
    out('6. An attack. The cloud operator swaps the image named "guest" for a tampered copy that copies the');
    out('   VM\'s private host key to the console, where the operator can read it. Same name, other bytes:');
    const tampered = join(dir, 'guest-tampered.mjs');
    await writeFile(tampered, tamperedGuestImage());
    const operator: NodeJS.ProcessEnv = { PATH: user['PATH'], HOME: home, LANG: 'C' };
    await step(['image', 'push', tampered, '--name', GUEST_IMAGE_NAME, '--replace', '--dir', c.paths.manager], 0, operator);
    out(`   (its digest is ${sha256Digest(tamperedGuestImage())}, which is on no allowlist)`);
    const knownHosts = join(user['TRUSTLAUNCH_CONFIG_DIR'] as string, 'known_hosts');
    const before = await readFile(knownHosts, 'utf8');
    out('   You create another VM from "guest", exactly as before:');
    const refused = await step(['vm', 'create', '--image', GUEST_IMAGE_NAME, '--name', 'second'], 3);
    const after = await readFile(knownHosts, 'utf8');
    if (!refused.stderr.includes('error: RECEIPT_CONTRAINDICATED: ') || !refused.stderr.includes('KERNEL_NOT_ALLOWED') || after !== before) {
      throw new TrustlaunchError('INTERNAL', `demo: the tampered launch was not refused as it should be:\n${refused.stderr}`);
    }
    out('   Caught: the CA measured a kernel that is not on its allowlist (KERNEL_NOT_ALLOWED) and signed a "no".');
    out('   Your client refused the VM (exit code 3) and wrote nothing: known_hosts is unchanged, so ssh');
    out('   would not even connect to it. The operator could stop your launch, but not fool you.');
    out('');

    // --- 7. the end -------------------------------------------------------------------------
    out('7. Cleaning up: your VMs, then the whole cloud.');
    await step(['vm', 'rm', 'hello'], 0);
    await step(['vm', 'rm', 'second'], 0);
    await cluster.stop();
    cluster = undefined;
    out('   everything stopped.');
    out('');
    out('Done. To run the pieces yourself, see README.md ("Five minutes by hand"), or keep a cloud');
    out('running with `trustlaunch up` and use the commands above against it.');
  } finally {
    await cluster?.stop();
    if (o.keep !== true) await rm(dir, { recursive: true, force: true });
    else if (existsSync(dir)) out(`(kept ${dir})`);
  }
}
