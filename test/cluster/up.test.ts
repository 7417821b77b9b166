// `trustlaunch up` as a process: it prints what a user needs (--json), serves a real
// launch, and on Ctrl-C (SIGINT) or SIGTERM exits 0 leaving nothing behind — no node,
// guest or sshd process, every port free, its temporary directory gone. A second `up`
// on the same directory resumes the same cloud (same CA, same ports).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { portIsFree } from '../node/vm/support.js';
import { tempDir } from '../support/system.js';
import { fileText, processesUnder, run } from './support/cloud.js';

const BIN = new URL('../../bin/trustlaunch.js', import.meta.url).pathname;

interface UpInfo {
  dir: string;
  ca: { url: string; fingerprint: string; identityFile: string };
  manager: { url: string; caCertFile: string };
  nodes: Array<{ id: string; url: string; port: number }>;
  user: { name: string; token: string; tokenFile: string };
  env: Record<string, string>;
  commands: string[];
}

/** Starts `trustlaunch up … --json` and resolves with its JSON document once everything is up. */
function startUp(args: readonly string[]): Promise<{ child: ChildProcess; info: UpInfo; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, 'up', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`up did not come up in 90 s:\n${stderr}`))), 90_000);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      try {
        const info = JSON.parse(stdout) as UpInfo;
        clearTimeout(timer);
        resolve({ child, info, exited });
      } catch {
        // not complete yet
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`up exited (${code}) before it was up:\n${stderr}`));
    });
  });
}

const portOf = (url: string): number => Number(new URL(url).port);

async function assertNothingLeft(dir: string, ports: readonly number[]): Promise<void> {
  assert.deepEqual(await processesUnder(dir), [], 'processes left behind');
  for (const port of ports) assert.equal(await portIsFree(port), true, `port ${port} still taken`);
}

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
