// The `trustlaunch manager …` and `trustlaunch image …` commands, run as the user runs
// them (bin/trustlaunch.js in a child process): files and modes from init, tokens shown
// once, --json output, connection settings from flags, --dir and the environment, and the
// documented exit codes.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../../src/cli/exit-codes.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { tempDir } from '../support/system.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/trustlaunch.js');

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function cli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const clean = { ...process.env };
    for (const k of ['TRUSTLAUNCH_MANAGER_URL', 'TRUSTLAUNCH_TOKEN', 'TRUSTLAUNCH_MANAGER_CA', 'DATABASE_URL']) delete clean[k];
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const json = <T>(r: Run): T => {
  assert.equal(r.code, 0, `exit ${String(r.code)}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
};

describe('manager and image CLI', () => {
  let tmp: { path: string; dispose: () => void };
  let dir: string;
  let server: ChildProcess | undefined;
  let adminToken: string;

  before(async () => {
    tmp = tempDir('tl-mgr-cli-');
    dir = join(tmp.path, 'manager');
    const init = json<{ adminToken: string; adminTokenFile: string; caCertificateFile: string; listen: { host: string; port: number } }>(
      await cli(['manager', 'init', '--dir', dir, '--listen', '127.0.0.1:0', '--scheduler', 'bin-pack', '--json']),
    );
    adminToken = init.adminToken;
    server = spawn(process.execPath, [BIN, 'manager', 'serve', '--dir', dir, '--log-level', 'silent'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const deadline = Date.now() + 30_000;
    while (!existsSync(join(dir, 'endpoint'))) {
      assert.ok(Date.now() < deadline && server.exitCode === null, 'the manager did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    if (server !== undefined && server.exitCode === null) {
      const exited = new Promise((r) => server?.once('exit', r));
      server.kill('SIGINT');
      await exited;
    }
    tmp.dispose();
  });

  it('init writes the config, TLS identity and admin token with secret files 0600, the token only hashed in the config', () => {
    const mode = (f: string): number => statSync(join(dir, f)).mode & 0o777;
    assert.equal(mode('.'), 0o700);
    for (const f of ['admin.token', 'manager.json', 'tls/ca-key.pem', 'tls/server-key.pem']) assert.equal(mode(f), 0o600, f);
    assert.equal(readFileSync(join(dir, 'admin.token'), 'utf8').trim(), adminToken);
    const config = readFileSync(join(dir, 'manager.json'), 'utf8');
    assert.ok(!config.includes(adminToken));
    assert.match(config, /"scheduler": "bin-pack"/);
    assert.match(adminToken, /^tladm_/);
  });

  it('refuses to initialise a directory twice (exit 1, nothing changed)', async () => {
    const before = readFileSync(join(dir, 'manager.json'), 'utf8');
    const r = await cli(['manager', 'init', '--dir', dir]);
    assert.equal(r.code, EXIT.FAILURE);
    assert.match(r.stderr, /CONFLICT/);
    assert.equal(readFileSync(join(dir, 'manager.json'), 'utf8'), before);
  });

  it('adds, lists and removes users; a user token is shown once and works from the environment', async () => {
    const added = json<{ user: { name: string; role: string }; token: string }>(await cli(['manager', 'user', 'add', 'alice', '--dir', dir, '--json']));
    assert.deepEqual(added.user.name, 'alice');
    assert.match(added.token, /^tlusr_/);
    const again = await cli(['manager', 'user', 'add', 'alice', '--dir', dir]);
    assert.equal(again.code, EXIT.FAILURE);
    assert.match(again.stderr, /^error: CONFLICT: /m);
    assert.deepEqual(json<{ users: Array<{ name: string }> }>(await cli(['manager', 'user', 'ls', '--dir', dir, '--json'])).users.map((u) => u.name), ['admin', 'alice']);
    const human = await cli(['manager', 'user', 'ls', '--dir', dir]);
    assert.match(human.stdout, /^NAME\s+ROLE\s+CREATED\nadmin\s+admin\s/);

    const env = {
      TRUSTLAUNCH_MANAGER_URL: readFileSync(join(dir, 'endpoint'), 'utf8').trim(),
      TRUSTLAUNCH_TOKEN: added.token,
      TRUSTLAUNCH_MANAGER_CA: join(dir, 'tls/ca.pem'),
    };
    assert.deepEqual(json<{ images: unknown[] }>(await cli(['image', 'ls', '--json'], env)).images, []);
    const forbidden = await cli(['manager', 'user', 'ls'], env);
    assert.equal(forbidden.code, EXIT.FAILURE);
    assert.match(forbidden.stderr, /FORBIDDEN/);
    // A token file must be private.
    const tokenFile = join(tmp.path, 'alice.token');
    writeFileSync(tokenFile, `${added.token}\n`, { mode: 0o644 });
    const insecure = await cli(['image', 'ls', '--token-file', tokenFile, '--manager', env.TRUSTLAUNCH_MANAGER_URL, '--ca-cert', env.TRUSTLAUNCH_MANAGER_CA]);
    assert.match(insecure.stderr, /FILE_INSECURE/);
    assert.notEqual(insecure.code, EXIT.OK);

    assert.equal((await cli(['manager', 'user', 'rm', 'alice', '--dir', dir])).code, EXIT.OK);
    const revoked = await cli(['image', 'ls'], env);
    assert.match(revoked.stderr, /UNAUTHENTICATED/);
  });

  it('pushes a raw image and a QEMU bundle (flags, or a directory checked against its manifest.json), lists and removes them', async () => {
    const raw = join(tmp.path, 'guest.img');
    writeFileSync(raw, 'a process guest');
    const pushed = json<{ image: { name: string; digest: string; kind: string } }>(await cli(['image', 'push', raw, '--name', 'guest', '--dir', dir, '--json']));
    assert.deepEqual(pushed.image, { ...pushed.image, name: 'guest', digest: sha256Digest('a process guest'), kind: 'raw' });

    const b = join(tmp.path, 'bundle');
    const files = { vmlinuz: 'kernel bytes', 'initrd.img': 'initrd bytes', cmdline: 'console=ttyS0 quiet panic=-1' };
    const { mkdirSync } = await import('node:fs');
    mkdirSync(b);
    for (const [f, content] of Object.entries(files)) writeFileSync(join(b, f), content);
    const manifest = { cmdline: sha256Digest(files.cmdline), initrd: sha256Digest(files['initrd.img']), kernel: sha256Digest(files.vmlinuz) };
    writeFileSync(join(b, 'manifest.json'), JSON.stringify(manifest));
    const bundle = json<{ image: { kind: string; digest: string; parts: Array<{ role: string; digest: string }> } }>(await cli(['image', 'push', '--bundle', b, '--name', 'debian', '--dir', dir, '--json']));
    assert.equal(bundle.image.kind, 'bundle');
    assert.equal(bundle.image.digest, sha256Digest(JSON.stringify(manifest)), 'the image digest is the digest of the canonical manifest');
    assert.deepEqual(bundle.image.parts.map((p) => p.role), ['manifest', 'kernel', 'initrd', 'cmdline']);
    const flags = json<{ image: { digest: string } }>(
      await cli(['image', 'push', '--kernel', join(b, 'vmlinuz'), '--initrd', join(b, 'initrd.img'), '--cmdline-file', join(b, 'cmdline'), '--name', 'debian2', '--dir', dir, '--json']),
    );
    assert.equal(flags.image.digest, bundle.image.digest, 'same parts, same bundle');

    writeFileSync(join(b, 'initrd.img'), 'a swapped initrd');
    const swapped = await cli(['image', 'push', '--bundle', b, '--name', 'debian3', '--dir', dir]);
    assert.equal(swapped.code, EXIT.USAGE);
    assert.match(swapped.stderr, /BLOB_DIGEST_MISMATCH/);

    const listed = await cli(['image', 'ls', '--dir', dir]);
    assert.match(listed.stdout, /^debian\s+bundle\s/m);
    assert.match(listed.stdout, /^guest\s+raw\s+15\s+sha256:/m);
    assert.equal((await cli(['image', 'rm', 'debian2', '--dir', dir])).code, EXIT.OK);
    const gone = await cli(['image', 'rm', 'debian2', '--dir', dir]);
    assert.equal(gone.code, EXIT.NOT_FOUND);
  });

  it('creates one-time node join tokens and shows the (empty) inventory', async () => {
    const t = json<{ token: string; expiresAt: string }>(await cli(['manager', 'node', 'token', 'create', '--ttl', '60', '--dir', dir, '--json']));
    assert.match(t.token, /^tljoin_/);
    assert.ok(Date.parse(t.expiresAt) > Date.now());
    assert.deepEqual(json<{ nodes: unknown[] }>(await cli(['manager', 'node', 'ls', '--dir', dir, '--json'])).nodes, []);
    const missing = await cli(['manager', 'node', 'show', 'node-9', '--dir', dir]);
    assert.equal(missing.code, EXIT.NOT_FOUND);
  });

  it('uses the documented exit codes for usage errors, missing settings and an unreachable manager', async () => {
    assert.equal((await cli(['manager', 'user', 'add'])).code, EXIT.USAGE, 'missing argument');
    assert.equal((await cli(['image', 'push', '--name', 'x', '--dir', dir])).code, EXIT.USAGE, 'neither a file nor a bundle');
    assert.equal((await cli(['manager', 'init', '--dir', join(tmp.path, 'x'), '--listen', 'nonsense'])).code, EXIT.USAGE);
    assert.equal((await cli(['image', 'ls'])).code, EXIT.USAGE, 'no manager URL anywhere');
    const help = await cli(['manager', '--help']);
    assert.equal(help.code, EXIT.OK);
    assert.match(help.stdout, /init/);
    const down = await cli(['image', 'ls', '--manager', 'https://127.0.0.1:1', '--ca-cert', join(dir, 'tls/ca.pem')], { TRUSTLAUNCH_TOKEN: adminToken });
    assert.equal(down.code, EXIT.UNAVAILABLE);
  });
});
