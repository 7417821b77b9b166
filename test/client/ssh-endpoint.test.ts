// The VM's SSH endpoint as the client handles it (src/client/ssh-endpoint.ts): the address
// the (untrusted) manager reports never reaches a command line as an option; the ssh
// arguments are the strict ones; and the endpoint check reads the key a real sshd presents,
// waiting for one that is not there yet (a port that accepts and hangs up, as a port
// forward does before the guest's sshd runs, is not taken for it).

/** A loopback TCP server on a free port whose connections `handle` gets. */
async function tcpServer(handle: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}
const closeServer = (server: Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()));
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { checkEndpoint, listening, presentedHostKeys, probeHostKey, scanHostKeys, shellLine, sshArguments } from '../../src/client/ssh-endpoint.js';
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

  it('looks for a listening server with a connection, closed at once', async () => {
    assert.equal(await listening({ host: '127.0.0.1', port: sshd.port }, 3000), true);
    let closed = 29_999;
    while (!(await portIsFree(closed))) closed--;
    assert.equal(await listening({ host: '127.0.0.1', port: closed }, 3000), false, 'nothing listening');
    let opened = 0;
    let ended = 0;
    const silent = await tcpServer((socket) => {
      opened++;
      socket.on('close', () => ended++);
    });
    try {
      assert.equal(await listening({ host: '127.0.0.1', port: silent.port }, 3000), true);
      for (let i = 0; i < 50 && ended < 1; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual([opened, ended], [1, 1], 'the look closed its connection');
    } finally {
      await closeServer(silent.server);
    }
  });

  it('waits for an SSH server that is not there yet, and reads its key once it is', async () => {
    // Before `open`: the port accepts and hangs up at once, as QEMU's port forward does before the guest's sshd listens.
    let open = false;
    const sockets = new Set<Socket>();
    const proxy = await tcpServer((client) => {
      if (!open) {
        client.destroy();
        return;
      }
      const upstream = connect({ host: '127.0.0.1', port: sshd.port });
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
    });
    try {
      const scan = scanHostKeys({ host: '127.0.0.1', port: proxy.port }, Date.now() + 20_000);
      await new Promise((r) => setTimeout(r, 400));
      open = true;
      assert.deepEqual(await scan, [sshd.hostPublicKey.split(' ').slice(0, 2).join(' ')]);
      // And one that never answers is given up at the deadline: no keys.
      open = false;
      assert.deepEqual(await scanHostKeys({ host: '127.0.0.1', port: proxy.port }, Date.now() + 500), []);
    } finally {
      for (const s of sockets) s.destroy();
      await closeServer(proxy.server);
    }
  });
});
