// The user's CLI (`trustlaunch vm …`, `ca trust`, `verify`) as a person runs it: real
// processes against a real cloud, checking --help, --json documents, and the documented
// exit codes (0 trusted/ok, 1 failure, 2 usage, 3 untrusted, 4 unavailable, 5 not found).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tamperedGuestImage } from '../../src/cluster/tampered-image.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { fileText, run, startCloud, type TestCloud } from './support/cloud.js';

const BIN = new URL('../../bin/trustlaunch.js', import.meta.url).pathname;

interface Ran {
  status: number;
  stdout: string;
  stderr: string;
}
const cli = (args: readonly string[], env: NodeJS.ProcessEnv): Promise<Ran> => run(process.execPath, [BIN, ...args], { env, timeoutMs: 120_000 });
const json = <T = Record<string, unknown>>(r: Ran): T => {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
};
const errorOf = (r: Ran): { code: string; message: string; detail?: Record<string, unknown> } => json<{ error: { code: string; message: string } }>(r).error;

describe('trustlaunch CLI (user commands)', () => {
  let cloud: TestCloud;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    cloud = await startCloud({ nodes: 1 });
    env = cloud.user.env();
  });
  after(async () => cloud?.dispose());

  it('--help for every user command, exit 0', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['vm', '--help'], /create[\s\S]*ls[\s\S]*show[\s\S]*rm[\s\S]*ssh[\s\S]*receipt/],
      [['vm', 'create', '--help'], /--image[\s\S]*--ssh-key[\s\S]*--expect-kernel[\s\S]*--json/],
      [['vm', 'ssh', '--help'], /StrictHostKeyChecking=yes[\s\S]*--user/],
      [['vm', 'receipt', '--help'], /--expect-kernel/],
      [['ca', 'trust', '--help'], /--fingerprint[\s\S]*--ca-key/],
      [['verify', '--help'], /--ca-key[\s\S]*--nonce/],
      [['up', '--help'], /--nodes[\s\S]*--dir[\s\S]*--db/],
      [['demo', '--help'], /--keep/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args, env)));
    results.forEach((r, i) => {
      const [args, pattern] = cases[i] as [string[], RegExp];
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, pattern, args.join(' '));
    });
  });

  it('usage errors exit 2; no pinned CA exits 1 with CA_NOT_PINNED; an unreachable manager exits 4', async () => {
    const [noImage, badDigest, badNonce, unpinned, unreachable] = await Promise.all([
      cli(['vm', 'create', '--json'], env),
      cli(['vm', 'create', '--image', 'guest', '--expect-kernel', 'md5:00'], env),
      cli(['verify', '/dev/null', '--nonce', 'short', '--json'], env),
      cli(['vm', 'ls', '--json'], { ...env, TRUSTLAUNCH_CONFIG_DIR: join(cloud.dir, 'nobody') }),
      cli(['vm', 'ls', '--json'], { ...env, TRUSTLAUNCH_MANAGER_URL: 'https://127.0.0.1:1' }),
    ]);
    assert.equal(noImage.status, 2, noImage.stderr);
    assert.match(noImage.stderr, /--image/);
    assert.equal(badDigest.status, 2);
    assert.equal(badNonce.status, 2);
    assert.equal(errorOf(badNonce).code, 'MALFORMED_NONCE');
    assert.equal(unpinned.status, 1);
    assert.equal(errorOf(unpinned).code, 'CA_NOT_PINNED');
    assert.equal(unreachable.status, 4);
    assert.equal(errorOf(unreachable).code, 'UNAVAILABLE');
  });

  it('ca trust: a wrong fingerprint exits 3 and pins nothing; the right one pins', async () => {
    const other = { ...env, TRUSTLAUNCH_CONFIG_DIR: join(cloud.dir, 'pin-test') };
    const wrong = await cli(['ca', 'trust', cloud.cluster.summary.ca.url, '--fingerprint', sha256Digest('not the CA'), '--json'], other);
    assert.equal(wrong.status, 3);
    assert.equal(errorOf(wrong).code, 'CA_IDENTITY_MISMATCH');
    assert.equal(fileText(join(cloud.dir, 'pin-test', 'ca.json')), '');
    const right = await cli(['ca', 'trust', cloud.cluster.summary.ca.url, '--ca-key', join(cloud.cluster.paths.ca, 'identity.json'), '--json'], other);
    assert.equal(right.status, 0, right.stderr);
    assert.equal(json(right)['pinned'], cloud.cluster.summary.ca.fingerprint);
  });

  it('vm create → ls → show → receipt → verify → ssh → rm, with --json and exit codes', async () => {
    const created = await cli(['vm', 'create', '--image', 'guest', '--name', 'cli-vm', '--expect-kernel', cloud.cluster.summary.image.digest, '--json'], env);
    assert.equal(created.status, 0, created.stderr);
    const c = json<{ trusted: boolean; vm: { vmId: string; name: string }; checks: string[]; receipt: { jwt: string; claims: { eat_nonce: string } }; knownHosts: string }>(created);
    assert.equal(c.trusted, true);
    assert.deepEqual(c.checks, ['signature', 'nonce', 'status', 'vm', 'kernel', 'hostKey', 'hostCertificate', 'authorizedKey', 'endpoint']);
    assert.match(fileText(c.knownHosts), new RegExp(`^${c.vm.vmId} ssh-ed25519 `, 'm'));

    const [ls, show, receipt, raw] = await Promise.all([
      cli(['vm', 'ls', '--json'], env),
      cli(['vm', 'show', 'cli-vm', '--json'], env),
      cli(['vm', 'receipt', 'cli-vm', '--json'], env),
      cli(['vm', 'receipt', 'cli-vm', '--raw'], env),
    ]);
    assert.equal(ls.status, 0, ls.stderr);
    assert.deepEqual(json<{ vms: Array<{ vmId: string; verified: boolean }> }>(ls).vms.map((v) => [v.vmId, v.verified]), [[c.vm.vmId, true]]);
    assert.equal(show.status, 0, show.stderr);
    assert.equal(json(show)['verified'], true);
    assert.equal(receipt.status, 0, receipt.stderr);
    assert.equal(json(receipt)['receipt'], c.receipt.jwt);
    assert.equal(raw.stdout.trim(), c.receipt.jwt);

    // offline: with the CA's identity file, the right nonce (0) and another (3)
    const file = join(cloud.dir, 'receipt.jwt');
    writeFileSync(file, `${c.receipt.jwt}\n`);
    const identity = join(cloud.cluster.paths.ca, 'identity.json');
    const [good, bad, pinned] = await Promise.all([
      cli(['verify', file, '--ca-key', identity, '--nonce', c.receipt.claims.eat_nonce, '--vm', c.vm.vmId, '--json'], env),
      cli(['verify', file, '--ca-key', identity, '--nonce', newNonce(), '--json'], env),
      cli(['verify', file], env),
    ]);
    assert.equal(good.status, 0, good.stderr);
    assert.deepEqual(json(good)['checks'], ['signature', 'nonce', 'status', 'vm', 'hostKey']);
    assert.equal(bad.status, 3);
    assert.equal(errorOf(bad).code, 'NONCE_MISMATCH');
    assert.equal(pinned.status, 0, pinned.stderr);
    assert.match(pinned.stdout, /receipt verified with CA/);

    const [ssh, sshExit, printed] = await Promise.all([
      cli(['vm', 'ssh', 'cli-vm', '--', 'echo', 'inside-the-vm'], env),
      cli(['vm', 'ssh', 'cli-vm', '--', 'exit 7'], env),
      cli(['vm', 'ssh', 'cli-vm', '--json'], env),
    ]);
    assert.equal(ssh.status, 0, ssh.stderr);
    assert.equal(ssh.stdout.trim(), 'inside-the-vm');
    assert.equal(sshExit.status, 7, 'the remote exit code comes back');
    assert.ok(json<{ argv: string[] }>(printed).argv.includes('StrictHostKeyChecking=yes'));

    const rm = await cli(['vm', 'rm', 'cli-vm', '--json'], env);
    assert.equal(rm.status, 0, rm.stderr);
    assert.deepEqual(json(rm), { removed: c.vm.vmId, forgotten: true });
    assert.doesNotMatch(fileText(c.knownHosts), new RegExp(c.vm.vmId));
    const gone = await cli(['vm', 'show', 'cli-vm', '--json'], env);
    assert.equal(gone.status, 5);
    assert.equal(errorOf(gone).code, 'NOT_FOUND');
  });

  it('a contraindicated launch exits 3, names the check and the CA\'s reason, and writes nothing', async () => {
    const bytes = tamperedGuestImage();
    const digest = sha256Digest(bytes);
    await cloud.cluster.managerAdmin.call('PUT', `/v1/blobs/${digest}`, { raw: { body: bytes, contentType: 'application/octet-stream', length: bytes.length } });
    await cloud.cluster.managerAdmin.call('POST', '/v1/images', { body: { name: 'tampered', raw: digest } });
    const knownHosts = fileText(cloud.user.paths.knownHosts);
    const [asJson, human] = await Promise.all([
      cli(['vm', 'create', '--image', 'tampered', '--name', 'bad-json', '--json'], env),
      cli(['vm', 'create', '--image', 'tampered', '--name', 'bad-human'], env),
    ]);
    assert.equal(asJson.status, 3);
    const e = errorOf(asJson);
    assert.equal(e.code, 'RECEIPT_CONTRAINDICATED');
    assert.equal(e.detail?.['check'], 'status');
    assert.equal((e.detail?.['reason'] as { code: string }).code, 'KERNEL_NOT_ALLOWED');
    assert.equal(human.status, 3);
    assert.match(human.stderr, /NOT trusted: check status failed/);
    assert.match(human.stderr, /nothing was written to known_hosts/);
    assert.match(human.stderr, /error: RECEIPT_CONTRAINDICATED: .*KERNEL_NOT_ALLOWED/);
    assert.equal(fileText(cloud.user.paths.knownHosts), knownHosts);
  });
});
