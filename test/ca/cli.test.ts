// `trustlaunch ca …` as a user runs it: JSON output, human output, exit codes, --help,
// against a real `ca serve` process.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../../src/cli/exit-codes.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { exec } from '../support/exec.js';
import { tempDir } from '../support/system.js';
import { SimNode } from './support/sim-node.js';

const BIN = new URL('../../bin/trustlaunch.js', import.meta.url).pathname;

interface Run {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  json<T = Record<string, unknown>>(): T;
}

/** Runs the command (independent runs go in parallel: each costs a Node start-up). */
async function cli(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const r = await exec(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
  return { ...r, json: <T>() => JSON.parse(r.stdout) as T };
}

describe('trustlaunch ca (CLI)', () => {
  const tmp = tempDir('tl-ca-cli-');
  const dir = join(tmp.path, 'ca');
  let serve: ChildProcess;
  let url: string;
  let fingerprint: string;
  let node: SimNode;
  const admin = (args: readonly string[]): Promise<Run> => cli([...args, '--dir', dir, '--url', url]);

  before(async () => {
    const init = await cli(['ca', 'init', '--dir', dir, '--json', '--name', 'ca.test']);
    assert.equal(init.status, EXIT.OK, init.stderr);
    fingerprint = init.json<{ fingerprint: string }>().fingerprint;
    serve = spawn(process.execPath, [BIN, 'ca', 'serve', '--dir', dir, '--listen', '127.0.0.1:0', '--log-level', 'silent', '--threads', '1', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = createInterface({ input: serve.stdout as NodeJS.ReadableStream });
    let text = '';
    for await (const line of lines) {
      text += line;
      try {
        url = (JSON.parse(text) as { url: string }).url;
        break;
      } catch {
        // the JSON document spans several lines
      }
    }
    node = await SimNode.create({ dir: join(tmp.path, 'node') });
  });
  after(async () => {
    if (serve.exitCode === null) {
      serve.kill('SIGKILL');
      await once(serve, 'exit');
    }
    await node.dispose();
    tmp.dispose();
  });

  it('init printed the fingerprint that `ca fingerprint` prints and that GET /v1/keys hashes to', async () => {
    const [fp, asJson] = await Promise.all([cli(['ca', 'fingerprint', '--dir', dir]), cli(['ca', 'fingerprint', '--dir', dir, '--json'])]);
    assert.equal(fp.status, EXIT.OK);
    assert.equal(fp.stdout.trim(), fingerprint);
    const human = asJson.json<{ identity: { issuer: string } }>();
    assert.match(human.identity.issuer, /^trustlaunch-ca-/);
  });

  it('init refuses to overwrite (exit 1, error on stderr), and --help exits 0', async () => {
    const [again, help, noDir, badAlg] = await Promise.all([
      cli(['ca', 'init', '--dir', dir]),
      cli(['ca', 'allowlist', 'add', '--help']),
      cli(['ca', 'init']),
      cli(['ca', 'init', '--dir', join(tmp.path, 'x'), '--alg', 'RS256']),
    ]);
    assert.equal(again.status, EXIT.FAILURE);
    assert.match(again.stderr, /error: CONFLICT: .*--force/);
    assert.equal(help.status, EXIT.OK);
    assert.match(help.stdout, /--manifest <file>/);
    assert.equal(noDir.status, EXIT.USAGE, 'a missing required option is a usage error');
    assert.equal(badAlg.status, EXIT.USAGE);
  });

  it('endorsement add / ls', async () => {
    const file = join(tmp.path, 'manufacturer.pem');
    writeFileSync(file, node.manufacturerCa.pem);
    const add = await cli(['ca', 'endorsement', 'add', file, '--dir', dir, '--json']);
    assert.equal(add.status, EXIT.OK, add.stderr);
    const ls = (await cli(['ca', 'endorsement', 'ls', '--dir', dir, '--json'])).json<{ roots: Array<{ fingerprint: string }> }>();
    assert.deepEqual(ls.roots.map((r) => r.fingerprint), [node.manufacturerCa.sha256Fingerprint]);
  });

  it('token create prints a token once; token ls never does', async () => {
    const t = await cli(['ca', 'token', 'create', '--ttl', '1h', '--json', '--dir', dir, '--url', url]);
    assert.equal(t.status, EXIT.OK, t.stderr);
    const { token, id } = t.json<{ token: string; id: string }>();
    assert.match(token, /^tlenr_/);
    const ls = await cli(['ca', 'token', 'ls', '--dir', dir, '--url', url]);
    assert.ok(ls.stdout.includes(id) && !ls.stdout.includes(token));
  });

  it('allowlist add by digest, by --file (streamed sha256), by --manifest; ls; revoke', async () => {
    const image = join(tmp.path, 'vmlinuz');
    writeFileSync(image, Buffer.alloc(3 << 20, 7));
    const manifest = join(tmp.path, 'manifest.json');
    writeFileSync(manifest, JSON.stringify({ cmdline: sha256Digest('console=ttyS0'), initrd: sha256Digest('initrd'), kernel: sha256Digest('vmlinuz') }));
    const [byFile, byManifestRun, byDigest, badDigest, noSource] = await Promise.all([
      admin(['ca', 'allowlist', 'add', '--file', image, '--name', 'from-file', '--json']),
      admin(['ca', 'allowlist', 'add', '--manifest', manifest, '--name', 'guest', '--expires', '30d', '--json']),
      admin(['ca', 'allowlist', 'add', sha256Digest('kernel image'), '--name', 'kernel']),
      admin(['ca', 'allowlist', 'add', 'sha256:nothex', '--name', 'x']),
      admin(['ca', 'allowlist', 'add', '--name', 'x']),
    ]);
    assert.equal(byFile.status, EXIT.OK, byFile.stderr);
    const sum = spawnSync('sha256sum', [image], { encoding: 'utf8' }).stdout.split(' ')[0];
    assert.equal(byFile.json<{ kernel: string }>().kernel, `sha256:${sum}`);
    const byManifest = byManifestRun.json<{ initrd: string; cmdline: string; expiresAt: string }>();
    assert.equal(byManifest.initrd, sha256Digest('initrd'));
    assert.ok(Date.parse(byManifest.expiresAt) > Date.now() + 29 * 86_400_000);
    assert.equal(byDigest.status, EXIT.OK);
    assert.equal(badDigest.status, EXIT.USAGE);
    assert.equal(noSource.status, EXIT.USAGE, 'no source');
    const ls = await admin(['ca', 'allowlist', 'ls']);
    assert.match(ls.stdout, /from-file\s+sha256:/);
    assert.match(ls.stdout, /guest .*initrd sha256:.*cmdline sha256:.*expires/);
    const revoked = (await admin(['ca', 'allowlist', 'revoke', 'from-file', '--json'])).json<{ revokedAt?: string }>();
    assert.ok(revoked.revokedAt !== undefined);
    const dup = await admin(['ca', 'allowlist', 'add', sha256Digest('x'), '--name', 'guest']);
    assert.equal(dup.status, EXIT.FAILURE);
    assert.match(dup.stderr, /CONFLICT/);
  });

  it("platform add from a node's measurements.json; ls; rm", async () => {
    const ref = node.platformReference();
    const file = join(tmp.path, 'measurements.json');
    writeFileSync(file, JSON.stringify({ firmware: ref.firmware, hypervisor: ref.hypervisor, bootConfig: ref.bootConfig, minidomain: ref.minidomain }));
    const added = await admin(['ca', 'platform', 'add', '--name', 'rack-1', '--measurements', file, '--json']);
    assert.equal(added.status, EXIT.OK, added.stderr);
    assert.deepEqual(added.json<{ bootConfig: string }>().bootConfig, ref.bootConfig);
    const loose = (await admin(['ca', 'platform', 'add', '--name', 'loose', '--measurements', file, '--no-boot-config-check', '--pcr', `4=${'ab'.repeat(32)}`, '--json'])).json<{ bootConfig?: string; pcrs: Record<string, string> }>();
    assert.equal(loose.bootConfig, undefined);
    assert.deepEqual(loose.pcrs, { '4': 'ab'.repeat(32) });
    assert.match((await admin(['ca', 'platform', 'ls'])).stdout, /rack-1\n {2}hypervisor {2}sha256:/);
    assert.equal((await admin(['ca', 'platform', 'rm', 'loose'])).status, EXIT.OK);
    assert.equal((await admin(['ca', 'platform', 'rm', 'loose'])).status, EXIT.NOT_FOUND);
  });

  it('nodes ls / show / revoke, decisions ls, after a real registration and evidence', async () => {
    const { token } = (await cli(['ca', 'token', 'create', '--json', '--dir', dir, '--url', url])).json<{ token: string }>();
    const { CaClient } = await import('../../src/ca/client.js');
    const { parseCertificate } = await import('../../src/crypto/x509.js');
    const client = new CaClient({ url, root: parseCertificate(readFileSync(join(dir, 'root-ca.pem'), 'utf8')) });
    const challenge = await client.startRegistration(node.registrationRequest(token));
    await client.answerRegistration(challenge.registrationId, await node.answer(challenge));
    assert.equal((await client.evidence(await node.evidence())).status, 'affirming');
    await client.close();
    const [ls, showRun, missing, decisionsRun] = await Promise.all([
      admin(['ca', 'nodes', 'ls']),
      admin(['ca', 'nodes', 'show', 'node-1', '--json']),
      admin(['ca', 'nodes', 'show', 'no-such-node']),
      admin(['ca', 'decisions', 'ls', '--node', 'node-1', '--since', '1h', '--json']),
    ]);
    assert.match(ls.stdout, /node-1 {2}active {2}platform rack-1/);
    const show = showRun.json<{ ekCertificate: { issuer: string } }>();
    assert.match(show.ekCertificate.issuer, /manufacturer CA/);
    assert.equal(missing.status, EXIT.NOT_FOUND);
    const decisions = decisionsRun.json<{ decisions: Array<{ outcome: string }> }>();
    assert.deepEqual(decisions.decisions.map((d) => d.outcome), ['challenged', 'registered', 'affirming']);
    const revoked = await admin(['ca', 'nodes', 'revoke', 'node-1', '--reason', 'retired']);
    assert.equal(revoked.status, EXIT.OK);
    assert.match(revoked.stdout, /revoked: node-1 {2}revoked .*\(retired\)/);
    assert.match((await admin(['ca', 'decisions', 'ls', '--limit', '1'])).stdout, /challenged|registered|affirming|refused/);
  });

  it('exit codes: a wrong admin token is a failure, an unreachable CA is UNAVAILABLE, a bad --since is a usage error', async () => {
    const tokenFile = join(tmp.path, 'wrong.token');
    writeFileSync(tokenFile, 'tladm_wrongwrongwrongwrongwrongwrongwrongwrongwro\n', { mode: 0o600 });
    const [wrong, down, badSince, viaEnv] = await Promise.all([
      cli(['ca', 'nodes', 'ls', '--dir', dir, '--url', url, '--token-file', tokenFile]),
      cli(['ca', 'nodes', 'ls', '--dir', dir, '--url', 'https://127.0.0.1:1']),
      admin(['ca', 'decisions', 'ls', '--since', 'yesterday-ish']),
      cli(['ca', 'nodes', 'ls', '--json'], { TRUSTLAUNCH_CA_URL: url, TRUSTLAUNCH_CA_TOKEN: readFileSync(join(dir, 'admin.token'), 'utf8').trim(), TRUSTLAUNCH_CA_CERT: join(dir, 'root-ca.pem') }),
    ]);
    assert.equal(wrong.status, EXIT.FAILURE);
    assert.match(wrong.stderr, /FORBIDDEN/);
    assert.equal(down.status, EXIT.UNAVAILABLE);
    assert.match(down.stderr, /CA_UNREACHABLE/);
    assert.equal(badSince.status, EXIT.USAGE);
    assert.equal(viaEnv.status, EXIT.OK, viaEnv.stderr);
    assert.equal(statSync(join(dir, 'admin.token')).mode & 0o777, 0o600);
  });

  it('serve stops cleanly on SIGTERM', async () => {
    serve.kill('SIGTERM');
    const [code] = (await once(serve, 'exit')) as [number | null];
    assert.equal(code, 0);
  });
});
