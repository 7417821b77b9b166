// trustlaunch's known_hosts file (src/client/known-hosts.ts): the lines OpenSSH reads
// (oracle: `ssh-keygen -F`), replaced and removed per VM without touching other lines,
// and no update lost when many writers — in this process and in others — add at once.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { addKnownHost, knownAliases, knownHostLines, removeKnownHost } from '../../src/client/known-hosts.js';
import { generateKeyPair } from '../../src/crypto/keys.js';
import { formatSshPublicKey } from '../../src/crypto/ssh-keys.js';
import { exec } from '../support/exec.js';
import { requireCommand, tempDir } from '../support/system.js';


const key = (): string => formatSshPublicKey(generateKeyPair('ed25519').publicKey);
const caKey = key();
const entry = (alias: string, hostKey = key()) => ({ alias, hostKey, sshCaKey: caKey, comment: `test ${alias}` });

describe('known_hosts', () => {
  const tmp = tempDir('tl-known-hosts-');
  after(() => tmp.dispose());

  it('writes a comment, the host key line and the @cert-authority line; ssh-keygen -F finds both', async () => {
    requireCommand('ssh-keygen');
    const file = join(tmp.path, 'kh1');
    const e = entry('vm-aaaaaaaaaaaaaaaa');
    await addKnownHost(file, e);
    assert.deepEqual(readFileSync(file, 'utf8').split('\n'), [...knownHostLines(e), '']);
    const found = await exec('ssh-keygen', ['-F', e.alias, '-f', file]);
    assert.equal(found.status, 0, found.stderr);
    assert.ok(found.stdout.includes(`${e.alias} ${e.hostKey}`));
    assert.ok(found.stdout.includes(`@cert-authority ${e.alias} ${caKey}`));
    assert.deepEqual([...(await knownAliases(file))], [e.alias]);
  });

  it('replaces a VM\'s lines, removes only that VM\'s, and leaves lines it did not write', async () => {
    const file = join(tmp.path, 'kh2');
    writeFileSync(file, `example.org ${caKey}\n`);
    await addKnownHost(file, entry('vm-aaaaaaaaaaaaaaaa'));
    await addKnownHost(file, entry('vm-bbbbbbbbbbbbbbbb'));
    const replacement = entry('vm-aaaaaaaaaaaaaaaa');
    await addKnownHost(file, replacement);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(lines.filter((l) => l.includes('vm-aaaaaaaaaaaaaaaa')).length, 3);
    assert.ok(lines.includes(`vm-aaaaaaaaaaaaaaaa ${replacement.hostKey}`));
    assert.equal(await removeKnownHost(file, 'vm-bbbbbbbbbbbbbbbb'), true);
    assert.equal(await removeKnownHost(file, 'vm-bbbbbbbbbbbbbbbb'), false);
    assert.deepEqual([...(await knownAliases(file))].sort(), ['example.org', 'vm-aaaaaaaaaaaaaaaa']);
    assert.equal(readFileSync(file, 'utf8').split('\n')[0], `example.org ${caKey}`);
  });

  it('refuses an alias that is not a host name (it could inject a pattern)', () => {
    for (const alias of ['*', 'vm-a,vm-b', '!vm-a', 'a b', '', 'VM-A']) assert.throws(() => knownHostLines(entry(alias)), TypeError, alias);
  });

  it('loses no update with 40 writers in this process and 2 other processes at once', async () => {
    const file = join(tmp.path, 'kh3');
    const mine = Array.from({ length: 40 }, (_, i) => `vm-local${String(i).padStart(8, '0')}`);
    const script = (prefix: string): string =>
      `import { addKnownHost } from ${JSON.stringify(new URL('../../src/client/known-hosts.ts', import.meta.url).href)};` +
      `await Promise.all(Array.from({ length: 20 }, (_, i) => addKnownHost(${JSON.stringify(file)}, { alias: '${prefix}' + String(i).padStart(8, '0'), hostKey: ${JSON.stringify(key())}, sshCaKey: ${JSON.stringify(caKey)}, comment: 'child' })));`;
    const children = ['vm-childa', 'vm-childb'].map((p) => exec(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(p)]));
    await Promise.all(mine.map((alias) => addKnownHost(file, entry(alias))));
    for (const r of await Promise.all(children)) assert.equal(r.status, 0, r.stderr);
    const aliases = await knownAliases(file);
    assert.equal(aliases.size, 80);
    for (const alias of mine) assert.ok(aliases.has(alias));
    assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 240);
  });
});
