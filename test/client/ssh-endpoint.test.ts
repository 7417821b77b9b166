// The VM's SSH endpoint as the client handles it (src/client/ssh-endpoint.ts): the address
// the (untrusted) manager reports never reaches a command line as an option; the ssh
// arguments are the strict ones; and the endpoint check reads the key a real sshd presents.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkEndpoint, presentedHostKeys, probeHostKey, shellLine, sshArguments } from '../../src/client/ssh-endpoint.js';
import { generateKeyPair } from '../../src/crypto/keys.js';
import { formatSshPublicKey } from '../../src/crypto/ssh-keys.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { startSshd, type Sshd } from '../support/sshd.js';
import { requireCommand } from '../support/system.js';
import { portIsFree } from '../node/vm/support.js';

describe('ssh endpoint', () => {
  let sshd: Sshd;
  before(async () => {
    requireCommand('ssh-keyscan');
    sshd = await startSshd();
  });
  after(async () => sshd?.stop());

  it('takes only an address or a DNS name and a port from the manager', () => {
    for (const host of ['-oProxyCommand=touch /tmp/x', 'a b', 'host;rm', '', '..', '-p']) {
      assert.throws(() => checkEndpoint({ host, port: 22 }), (e: unknown) => isTrustlaunchError(e, 'MALFORMED_REQUEST'), host);
    }
    for (const port of [0, 65536, 22.5, -1]) assert.throws(() => checkEndpoint({ host: '127.0.0.1', port }), (e: unknown) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    assert.deepEqual(checkEndpoint({ host: '::1', port: 2222 }), { host: '::1', port: 2222 });
    assert.deepEqual(checkEndpoint({ host: 'vm-1.example', port: 22 }), { host: 'vm-1.example', port: 22 });
  });

  it('builds a strict ssh command: trustlaunch\'s file only, the VM id as host key alias, no key updates', () => {
    const argv = sshArguments({ endpoint: { host: '127.0.0.1', port: 2200 }, alias: 'vm-abcdefghijklmnop', knownHostsFile: '/c/known_hosts', user: 'me', identityFile: '/c/key', command: ['echo', 'a b'] });
    const options = argv.flatMap((a, i) => (argv[i - 1] === '-o' ? [a] : []));
    assert.deepEqual(options, ['StrictHostKeyChecking=yes', 'UserKnownHostsFile=/c/known_hosts', 'GlobalKnownHostsFile=/dev/null', 'HostKeyAlias=vm-abcdefghijklmnop', 'UpdateHostKeys=no', 'CheckHostIP=no', 'ConnectionAttempts=3', 'IdentitiesOnly=yes']);
    assert.deepEqual(argv.slice(-6), ['2200', '-l', 'me', '127.0.0.1', 'echo', 'a b']);
    assert.equal(shellLine(['ssh', '-o', 'X=y', 'echo', 'a b', "it's"]), `ssh -o X=y echo 'a b' 'it'\\''s'`);
    assert.throws(() => sshArguments({ endpoint: { host: '127.0.0.1', port: 22 }, alias: 'vm-x', knownHostsFile: 'f', user: '-oX' }), (e: unknown) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
  });

  it('reads the host key a real sshd presents; another key is HOST_KEY_MISMATCH; silence is "not answered"', async () => {
    const endpoint = { host: '127.0.0.1', port: sshd.port };
    assert.deepEqual(await presentedHostKeys(endpoint), [sshd.hostPublicKey.split(' ').slice(0, 2).join(' ')]);
    assert.deepEqual(await probeHostKey(endpoint, sshd.hostPublicKey, Date.now() + 5000), { answered: true });
    const other = formatSshPublicKey(generateKeyPair('ed25519').publicKey);
    await assert.rejects(probeHostKey(endpoint, other, Date.now() + 5000), (e: unknown) => isTrustlaunchError(e, 'HOST_KEY_MISMATCH') && e.detail?.['check'] === 'endpoint');
    let closed = 29_999;
    while (!(await portIsFree(closed))) closed--;
    const started = Date.now();
    assert.deepEqual(await probeHostKey({ host: '127.0.0.1', port: closed }, other, Date.now() + 1000), { answered: false });
    assert.ok(Date.now() - started < 6000);
  });
});
