// Command marshalling and response parsing (Part 1 §18) on byte-exact examples, and the
// response parser and stream framer fed hostile bytes: typed errors only, bounds before
// allocation, no trailing bytes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { EMPTY_AUTH, passwordAuth } from '../../../src/tpm/client/authorization.js';
import { marshalCommand, parseResponse, type TpmCommand } from '../../../src/tpm/client/command.js';
import { TPM_CC } from '../../../src/tpm/client/constants.js';
import { TpmResponseError } from '../../../src/tpm/client/errors.js';
import { ResponseAssembler, SerialQueue } from '../../../src/tpm/client/transport.js';
import { Tpm2bDigest } from '../../../src/tpm/structures/sized.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const getRandom8: TpmCommand<Buffer> = {
  code: TPM_CC.GetRandom,
  parameters: (w) => w.u16(8),
  response: (r) => Buffer.from(Tpm2bDigest.read(r, 'randomBytes')),
};

const nvWriteWithPassword: TpmCommand<void> = {
  code: TPM_CC.NV_Write,
  handles: [0x40000001, 0x01500010],
  authorizations: [passwordAuth('pw')],
  parameters: (w) => w.sized(Buffer.from('hi')).u16(0),
};

void describe('command marshalling', () => {
  void it('writes a command without sessions: tag, size, code, parameters', () => {
    assert.deepEqual(marshalCommand(getRandom8), hex('8001 0000000c 0000017b 0008'));
  });

  void it('writes handles, the authorization area and its size, then parameters', () => {
    assert.deepEqual(
      marshalCommand(nvWriteWithPassword),
      hex(`8002 00000027 00000137  40000001 01500010
           0000000b  40000009 0000 01 0002 7077
           0002 6869 0000`),
    );
  });

  void it('refuses more than three authorizations (a caller bug, not a TPM error)', () => {
    assert.throws(() => marshalCommand({ code: TPM_CC.Quote, authorizations: [EMPTY_AUTH, EMPTY_AUTH, EMPTY_AUTH, EMPTY_AUTH] }), RangeError);
  });
});

void describe('response parsing', () => {
  void it('reads a successful response', () => {
    const r = parseResponse(getRandom8, hex('8001 00000014 00000000 0008 0102030405060708'));
    assert.deepEqual(r.value, hex('0102030405060708'));
  });

  void it('reads parameterSize, parameters and the session area of a response with sessions', () => {
    const r = parseResponse(nvWriteWithPassword, hex('8002 00000013 00000000 00000000 0000 01 0000'));
    assert.equal(r.sessions.length, 1);
    assert.equal(r.sessions[0]?.sessionAttributes, 1);
  });

  void it('turns an error code into a TpmResponseError naming the command and the code', () => {
    assert.throws(
      () => parseResponse(nvWriteWithPassword, hex('8001 0000000a 0000098e')),
      (e: unknown) => e instanceof TpmResponseError && e.rc.name === 'TPM_RC_AUTH_FAIL' && e.rc.session === 1 && e.message.startsWith('TPM2_NV_Write failed'),
    );
  });

  const malformed: [string, TpmCommand<unknown>, string][] = [
    ['trailing bytes after the parameters', getRandom8, '8001 00000015 00000000 0008 0102030405060708 ff'],
    ['a TPM2B longer than its bound', getRandom8, '8001 00000010 00000000 ffff 01020304'],
    ['a size field that disagrees with the bytes', getRandom8, '8001 00000099 00000000 0008 0102030405060708'],
    ['a session tag on a command without sessions', getRandom8, '8002 00000014 00000000 0008 0102030405060708'],
    ['no session area for a command with one', nvWriteWithPassword, '8002 0000000e 00000000 00000000'],
    ['parameterSize beyond the response', nvWriteWithPassword, '8002 00000013 00000000 000000ff 0000 01 0000'],
    ['a session nonce longer than any digest', nvWriteWithPassword, '8002 00000013 00000000 00000000 00ff 01 0000'],
  ];
  for (const [why, cmd, bytes] of malformed) {
    void it(`rejects ${why} with TPM_PARSE_ERROR`, () => {
      assert.throws(() => parseResponse(cmd, hex(bytes)), (e: unknown) => isTrustlaunchError(e, 'TPM_PARSE_ERROR'));
    });
  }

  void it('never throws anything but a TrustlaunchError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 128 }), fc.boolean(), (body, sessions) => {
        const cmd = sessions ? nvWriteWithPassword : getRandom8;
        const header = Buffer.alloc(10);
        header.writeUInt16BE(sessions ? 0x8002 : 0x8001, 0);
        header.writeUInt32BE(10 + body.length, 2);
        try {
          parseResponse(cmd, Buffer.concat([header, body]));
        } catch (e) {
          assert.ok(isTrustlaunchError(e), String(e));
        }
      }),
      { numRuns: 3000 },
    );
  });
});

void describe('stream framing', () => {
  const response = hex('8001 00000014 00000000 0008 0102030405060708');

  void it('assembles a response split at every position', () => {
    for (let cut = 1; cut < response.length; cut++) {
      const a = new ResponseAssembler();
      assert.equal(a.push(response.subarray(0, cut)), undefined);
      assert.deepEqual(a.push(response.subarray(cut)), response);
    }
  });

  void it('refuses a header size outside 10..64 KiB before collecting the body', () => {
    for (const size of ['00000009', '00010001', 'ffffffff']) {
      const a = new ResponseAssembler();
      assert.throws(() => a.push(hex(`8001 ${size} 00000000`)), (e: unknown) => isTrustlaunchError(e, 'TPM_TRANSPORT_ERROR'));
    }
  });

  void it('refuses bytes beyond the announced end (the stream is out of step)', () => {
    const a = new ResponseAssembler();
    assert.throws(() => a.push(Buffer.concat([response, hex('00')])), (e: unknown) => isTrustlaunchError(e, 'TPM_TRANSPORT_ERROR'));
  });
});

void describe('command queue', () => {
  void it('runs jobs one at a time in arrival order, a failure not stopping the next', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let running = 0;
    const job = (name: string, fail = false) => async (): Promise<string> => {
      running++;
      assert.equal(running, 1, 'two jobs ran at once');
      log.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, 2));
      log.push(`end ${name}`);
      running--;
      if (fail) throw new Error(name);
      return name;
    };
    const results = await Promise.allSettled([q.run(job('a')), q.run(job('b', true)), q.run(job('c'))]);
    assert.deepEqual(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
  });

  void it('refuses work beyond its bound instead of growing without limit', async () => {
    const q = new SerialQueue(2);
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const first = q.run(() => gate);
    await new Promise((r) => setImmediate(r)); // the first job is running, two may wait
    const second = q.run(() => Promise.resolve());
    const third = q.run(() => Promise.resolve());
    await assert.rejects(q.run(() => Promise.resolve()), (e: unknown) => isTrustlaunchError(e, 'TPM_TRANSPORT_ERROR'));
    release();
    await Promise.all([first, second, third]);
  });
});
