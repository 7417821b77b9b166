// The socket transport against a real swtpm (TCP and unix socket) and against peers that
// misbehave on purpose (a TCP server on 127.0.0.1 speaking broken TPM framing): commands
// are queued one at a time, every failure is a typed error within a bounded time, a late
// answer is never taken for the next command's, and the retryable warnings are retried.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { TpmClient } from '../../../src/tpm/client/client.js';
import { getRandom } from '../../../src/tpm/client/commands/capability.js';
import { isTpmResponseError } from '../../../src/tpm/client/errors.js';
import { RC } from '../../../src/tpm/client/response-code.js';
import { SocketTransport } from '../../../src/tpm/client/socket-transport.js';
import { tpm2ok } from '../../support/tpm2-tools.js';
import { startSwtpmFixture, type SwtpmFixture } from '../swtpm/support.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const GET_RANDOM_8 = hex('8001 0000000c 0000017b 0008');
const randomAnswer = (fill: number): Buffer => Buffer.concat([hex('8001 00000014 00000000 0008'), Buffer.alloc(8, fill)]);

/** A TCP peer on 127.0.0.1 that answers each command with whatever `answer` decides. */
async function peer(answer: (socket: Socket, command: Buffer, n: number) => void): Promise<{ server: Server; port: number; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  let commands = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.on('data', (command: Buffer) => answer(socket, command, commands++));
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const address = server.address();
  assert.ok(typeof address === 'object' && address !== null);
  return {
    server,
    port: address.port,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function elapsed<T>(fn: () => Promise<T>): Promise<{ ms: number; result: PromiseSettledResult<T> }> {
  const t0 = performance.now();
  const [result] = await Promise.allSettled([fn()]);
  return { ms: performance.now() - t0, result: result as PromiseSettledResult<T> };
}

function rejectedWith(r: PromiseSettledResult<unknown>, code: string): void {
  assert.equal(r.status, 'rejected');
  assert.ok(isTrustlaunchError((r).reason), String((r).reason));
  assert.equal(((r).reason as { code: string }).code, code);
}

for (const kind of ['tcp', 'unix'] as const) {
  void describe(`socket transport to swtpm over ${kind}`, () => {
    let f: SwtpmFixture;
    before(async () => {
      f = await startSwtpmFixture({ transport: kind, manufactured: false });
    });
    after(async () => {
      await f.dispose();
    });

    void it('queues concurrent commands so each caller gets its own answer', async () => {
      const sizes = Array.from({ length: 64 }, (_, i) => (i % 48) + 1);
      const answers = await Promise.all(sizes.map((n) => getRandom(f.tpm, n)));
      assert.deepEqual(
        answers.map((a) => a.length),
        sizes,
      );
      assert.equal(new Set(answers.map((a) => a.toString('hex'))).size, answers.length);
    });

    void it('lets another client in after disconnect and reconnects on the next command', async () => {
      await getRandom(f.tpm, 4);
      await f.transport.disconnect();
      // swtpm serves one connection at a time: tpm2-tools gets through only because we let go.
      assert.match(tpm2ok('tpm2_getrandom', ['--hex', '8'], f.env()), /^[0-9a-f]{16}$/);
      assert.equal((await getRandom(f.tpm, 4)).length, 4);
    });
  });
}

void describe('socket transport against misbehaving peers', () => {
  const peers: { close: () => Promise<void> }[] = [];
  after(async () => {
    for (const p of peers) await p.close();
  });
  const track = <T extends { close: () => Promise<void> }>(p: T): T => {
    peers.push(p);
    return p;
  };

  void it('times out on a peer that never answers, within a bounded time', async () => {
    const p = track(await peer(() => undefined));
    const t = new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port: p.port });
    const { ms, result } = await elapsed(() => t.transmit(GET_RANDOM_8, 200));
    rejectedWith(result, 'TPM_TIMEOUT');
    assert.ok(ms >= 190 && ms < 2000, `${ms} ms`);
    await t.close();
  });

  void it('never takes a late answer for the next command', async () => {
    const p = track(
      await peer((socket, _c, n) => {
        if (n === 0) setTimeout(() => socket.write(randomAnswer(0xaa)), 300);
        else socket.write(randomAnswer(0xbb));
      }),
    );
    const t = new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port: p.port });
    rejectedWith((await elapsed(() => t.transmit(GET_RANDOM_8, 100))).result, 'TPM_TIMEOUT');
    await new Promise((r) => setTimeout(r, 350));
    assert.deepEqual(await t.transmit(GET_RANDOM_8, 1000), randomAnswer(0xbb));
    assert.equal(p.connections(), 2, 'the timed-out connection was dropped');
    await t.close();
  });

  const broken: [string, (socket: Socket) => void][] = [
    ['announces a size beyond 64 KiB', (s) => s.write(hex('8001 7fffffff 00000000'))],
    ['announces a size below a header', (s) => s.write(hex('8001 00000004 00000000'))],
    ['sends bytes beyond the announced end', (s) => s.write(Buffer.concat([randomAnswer(1), hex('00')]))],
    ['closes in the middle of a response', (s) => s.end(randomAnswer(1).subarray(0, 12))],
    ['resets the connection', (s) => s.resetAndDestroy()],
  ];
  for (const [why, misbehave] of broken) {
    void it(`fails with TPM_TRANSPORT_ERROR when the peer ${why}, then reconnects`, async () => {
      const p = track(await peer((socket, _c, n) => (n === 0 ? misbehave(socket) : socket.write(randomAnswer(7)))));
      const t = new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port: p.port });
      const { ms, result } = await elapsed(() => t.transmit(GET_RANDOM_8, 2000));
      rejectedWith(result, 'TPM_TRANSPORT_ERROR');
      assert.ok(ms < 1500, `${ms} ms`);
      assert.deepEqual(await t.transmit(GET_RANDOM_8, 1000), randomAnswer(7));
      assert.equal(p.connections(), 2);
      await t.close();
    });
  }

  void it('drops a connection on which bytes arrive unasked', async () => {
    const p = track(
      await peer((socket) => {
        socket.write(randomAnswer(3));
        setTimeout(() => socket.write(hex('dead')), 20);
      }),
    );
    const t = new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port: p.port });
    assert.deepEqual(await t.transmit(GET_RANDOM_8, 1000), randomAnswer(3));
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(await t.transmit(GET_RANDOM_8, 1000), randomAnswer(3));
    assert.equal(p.connections(), 2);
    await t.close();
  });

  void it('fails fast when nothing listens', async () => {
    const p = await peer(() => undefined);
    const port = p.port;
    await p.close();
    const t = new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port });
    const { ms, result } = await elapsed(() => t.transmit(GET_RANDOM_8, 5000));
    rejectedWith(result, 'TPM_TRANSPORT_ERROR');
    assert.ok(ms < 1000, `${ms} ms`);
  });

  void it('refuses endpoints off loopback and commands that are not framed', () => {
    assert.throws(() => new SocketTransport({ kind: 'tcp', host: '10.0.0.1', port: 2321 }), TypeError);
    const t = new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port: 2321 });
    assert.throws(() => void t.transmit(hex('8001 0000000d 0000017b 0008'), 100), RangeError);
  });

  void it('retries TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING, then answers', async () => {
    const warnings = ['00000922', '00000908', '0000090a'];
    const p = track(await peer((socket, _c, n) => socket.write(n < warnings.length ? hex(`8001 0000000a ${warnings[n] ?? ''}`) : randomAnswer(9))));
    const tpm = new TpmClient(new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port: p.port }), { timeoutMs: 1000 });
    assert.deepEqual(await getRandom(tpm, 8), Buffer.alloc(8, 9));
    assert.equal(tpm.retries, 3);
    await tpm.close();
  });

  void it('gives up after the bounded number of attempts with the warning as a typed error', async () => {
    const p = track(await peer((socket) => socket.write(hex('8001 0000000a 00000922'))));
    const tpm = new TpmClient(new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port: p.port }), { timeoutMs: 1000, retry: { attempts: 4, delayMs: 1, maxDelayMs: 4 } });
    await assert.rejects(getRandom(tpm, 8), (e: unknown) => isTpmResponseError(e, RC.RETRY) && e.rc.name === 'TPM_RC_RETRY');
    assert.equal(tpm.retries, 3);
    await tpm.close();
  });

  void it('does not retry other warnings', async () => {
    const p = track(await peer((socket) => socket.write(hex('8001 0000000a 00000902'))));
    const tpm = new TpmClient(new SocketTransport({ kind: 'tcp', host: '127.0.0.1', port: p.port }), { timeoutMs: 1000 });
    await assert.rejects(getRandom(tpm, 8), (e: unknown) => isTpmResponseError(e, RC.OBJECT_MEMORY));
    assert.equal(tpm.retries, 0);
    await tpm.close();
  });
});
