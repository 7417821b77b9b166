// `trustlaunch up` as a process: it prints what a user needs (--json), serves a real
// launch, and on Ctrl-C (SIGINT) or SIGTERM exits 0 leaving nothing behind — no node,
// guest or sshd process, every port free, its temporary directory gone. A second `up`
// on the same directory resumes the same cloud (same CA, same ports).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { tempDir } from '../support/system.js';
import { fileText, processesUnder, run } from './support/cloud.js';
import { BIN, assertNothingLeft, portOf, startUp } from './support/up-process.js';

describe('trustlaunch up', () => {
  const tmp = tempDir('tl-up-test-');
  after(() => tmp.dispose());

  it('prints endpoints, fingerprint and a token; serves a launch; Ctrl-C stops everything and removes its temporary directory', async () => {
    const { child, info, exited } = await startUp(['--nodes', '2']);
    try {
      assert.equal(info.nodes.length, 2);
      assert.match(info.ca.fingerprint, /^sha256:[0-9a-f]{64}$/);
      assert.match(info.user.token, /^tlusr_/);
      assert.equal(fileText(info.user.tokenFile).trim(), info.user.token);
      assert.ok(info.commands[0]?.includes(`ca trust ${info.ca.url} --fingerprint ${info.ca.fingerprint}`));
      // a user, with exactly the environment and commands up printed
      const env = { PATH: process.env['PATH'] ?? '', HOME: tmp.path, TRUSTLAUNCH_CONFIG_DIR: join(tmp.path, 'user'), ...info.env };
      const trust = await run(process.execPath, [BIN, 'ca', 'trust', info.ca.url, '--fingerprint', info.ca.fingerprint], { env });
      assert.equal(trust.status, 0, trust.stderr);
      const created = await run(process.execPath, [BIN, 'vm', 'create', '--image', 'guest', '--name', 'hello', '--json'], { env });
      assert.equal(created.status, 0, created.stderr);
      const ssh = await run(process.execPath, [BIN, 'vm', 'ssh', 'hello', '--json'], { env });
      const sshPort = Number((JSON.parse(ssh.stdout) as { argv: string[] }).argv.find((_a, i, all) => all[i - 1] === '-p'));
      assert.ok(sshPort > 0);
      assert.notDeepEqual(await processesUnder(info.dir), [], 'the VM runs under the directory');

      child.kill('SIGINT');
      assert.equal(await exited, 0);
      await assertNothingLeft(info.dir, [portOf(info.ca.url), portOf(info.manager.url), ...info.nodes.map((n) => n.port), sshPort]);
      assert.equal(existsSync(info.dir), false, 'the temporary directory is removed');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('resumes a directory: same CA, same ports; SIGTERM stops it too', async () => {
    const dir = join(tmp.path, 'kept');
    const first = await startUp(['--nodes', '1', '--dir', dir]);
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
    await assertNothingLeft(dir, [portOf(first.info.ca.url), portOf(first.info.manager.url), first.info.nodes[0]?.port ?? 0]);

    const second = await startUp(['--dir', dir]);
    try {
      assert.equal(second.info.ca.fingerprint, first.info.ca.fingerprint);
      assert.equal(second.info.ca.url, first.info.ca.url);
      assert.equal(second.info.manager.url, first.info.manager.url);
      assert.deepEqual(second.info.nodes, first.info.nodes);
      assert.equal(second.info.user.token, first.info.user.token);
      // the resumed cloud still launches and verifies
      const env = { PATH: process.env['PATH'] ?? '', HOME: tmp.path, TRUSTLAUNCH_CONFIG_DIR: join(tmp.path, 'user2'), ...second.info.env };
      assert.equal((await run(process.execPath, [BIN, 'ca', 'trust', second.info.ca.url, '--fingerprint', second.info.ca.fingerprint], { env })).status, 0);
      const created = await run(process.execPath, [BIN, 'vm', 'create', '--image', 'guest', '--json'], { env });
      assert.equal(created.status, 0, created.stderr);
      second.child.kill('SIGINT');
      assert.equal(await second.exited, 0);
      await assertNothingLeft(dir, [portOf(second.info.ca.url), portOf(second.info.manager.url)]);
      assert.equal(existsSync(join(dir, 'cluster.json')), true, 'a --dir is kept');
    } finally {
      second.child.kill('SIGKILL');
    }
  });
});
