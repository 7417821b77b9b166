// Error paths against a real swtpm: a wrong password, a missing handle, a TPM that freezes
// or vanishes in the middle of a command. Each gives a typed error naming the spec code (or
// TPM_TIMEOUT / TPM_TRANSPORT_ERROR) within a bounded time, and leaves no transient object
// or session behind.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { TPM_ALG, TPM_RH } from '../../../src/tpm/constants.js';
import { pcrSelection } from '../../../src/tpm/structures/pcr-selection.js';
import { EK_TEMPLATE_RSA2048 } from '../../../src/tpm/templates.js';
import { passwordAuth } from '../../../src/tpm/client/authorization.js';
import { TpmClient } from '../../../src/tpm/client/client.js';
import { quote } from '../../../src/tpm/client/commands/attestation.js';
import { getRandom } from '../../../src/tpm/client/commands/capability.js';
import { nvDefineSpace, nvRead, nvUndefineSpace } from '../../../src/tpm/client/commands/nv.js';
import { createPrimary, flushContext, readPublic } from '../../../src/tpm/client/commands/objects.js';
import { TPMA_NV } from '../../../src/tpm/client/constants.js';
import { TpmResponseError, isTpmResponseError } from '../../../src/tpm/client/errors.js';
import { withPolicySecret, withTransient } from '../../../src/tpm/client/scoped.js';
import { SocketTransport } from '../../../src/tpm/client/socket-transport.js';
import { assertNoLoadedHandles, startSwtpmFixture, type SwtpmFixture } from '../swtpm/support.js';

function responseError(name: string, where?: { handle?: number; session?: number; parameter?: number }) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof TpmResponseError, String(e));
    assert.equal(e.code, 'TPM_RESPONSE_ERROR');
    assert.equal(e.rc.name, name);
    if (where !== undefined) assert.deepEqual({ handle: e.rc.handle, session: e.rc.session, parameter: e.rc.parameter }, { handle: undefined, session: undefined, parameter: undefined, ...where });
    return true;
  };
}

async function timed<T>(p: Promise<T>): Promise<{ ms: number; error: unknown }> {
  const t0 = performance.now();
  try {
    await p;
  } catch (error) {
    return { ms: performance.now() - t0, error };
  }
  assert.fail('the command succeeded');
}

void describe('TPM client error paths against swtpm', () => {
  let f: SwtpmFixture;
  before(async () => {
    f = await startSwtpmFixture({ timeoutMs: 5000 });
  });
  afterEach(async () => {
    await assertNoLoadedHandles(f.tpm);
  });
  after(async () => {
    await f.dispose();
  });

  void it('a wrong password: TPM_RC_BAD_AUTH on a noDA index, TPM_RC_AUTH_FAIL on a DA-protected one (session 1)', async () => {
    for (const [index, noDA, name] of [
      [0x01500030, true, 'TPM_RC_BAD_AUTH'],
      [0x01500031, false, 'TPM_RC_AUTH_FAIL'],
    ] as const) {
      const attributes = (TPMA_NV.OWNERWRITE | TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD | (noDA ? TPMA_NV.NO_DA : 0)) >>> 0;
      await nvDefineSpace(f.tpm, { indexAuth: Buffer.from('right'), public: { nvIndex: index, nameAlg: TPM_ALG.SHA256, attributes, authPolicy: Buffer.alloc(0), dataSize: 8 } });
      try {
        await assert.rejects(nvRead(f.tpm, { index, authHandle: index, auth: passwordAuth('wrong'), size: 8 }), responseError(name, { session: 1 }));
      } finally {
        await nvUndefineSpace(f.tpm, { index });
      }
    }
  });

  void it('a wrong hierarchy password inside a policy scope fails and the session is flushed', async () => {
    await assert.rejects(
      withPolicySecret(f.tpm, TPM_ALG.SHA256, () => Promise.resolve(), { authHandle: TPM_RH.ENDORSEMENT, auth: passwordAuth('not-the-endorsement-auth') }),
      responseError('TPM_RC_BAD_AUTH', { session: 1 }),
    );
  });

  void it('a missing handle: TPM_RC_HANDLE naming which handle', async () => {
    await assert.rejects(readPublic(f.tpm, 0x81000fff), responseError('TPM_RC_HANDLE', { handle: 1 }));
    await assert.rejects(quote(f.tpm, { signHandle: 0x81000fff, qualifyingData: Buffer.alloc(0), pcrs: [pcrSelection(TPM_ALG.SHA256, [0])] }), responseError('TPM_RC_HANDLE', { handle: 1 }));
    await assert.rejects(nvRead(f.tpm, { index: 0x01500fff, size: 4 }), responseError('TPM_RC_HANDLE', { handle: 2 }));
    await assert.rejects(flushContext(f.tpm, 0x80ffffff), (e: unknown) => isTpmResponseError(e));
  });

  void it('an error inside a transient scope still flushes the object', async () => {
    await assert.rejects(
      withTransient(
        f.tpm,
        () => createPrimary(f.tpm, { hierarchy: TPM_RH.ENDORSEMENT, template: EK_TEMPLATE_RSA2048 }),
        () => readPublic(f.tpm, 0x81000fff),
      ),
      responseError('TPM_RC_HANDLE'),
    );
  });

  void it('a frozen TPM: TPM_TIMEOUT within the bound; the client recovers once it thaws', async () => {
    await f.transport.disconnect(); // swtpm serves one connection at a time
    const tpm = new TpmClient(new SocketTransport(f.proc.data), { timeoutMs: 300 });
    await getRandom(tpm, 8);
    f.proc.signal('SIGSTOP');
    try {
      const { ms, error } = await timed(getRandom(tpm, 8));
      assert.ok(isTrustlaunchError(error, 'TPM_TIMEOUT'), String(error));
      assert.ok(ms >= 290 && ms < 2000, `${ms} ms`);
    } finally {
      f.proc.signal('SIGCONT');
    }
    assert.equal((await getRandom(tpm, 8)).length, 8);
    await tpm.close();
  });

  void it('a TPM that disappears mid-command: TPM_TRANSPORT_ERROR at once, not a hang; later commands fail the same way', async () => {
    await f.transport.disconnect();
    const tpm = new TpmClient(new SocketTransport(f.proc.data), { timeoutMs: 10_000 });
    await getRandom(tpm, 8);
    // Frozen first, so the command is surely in flight when the process is killed.
    f.proc.signal('SIGSTOP');
    const pending = timed(createPrimary(tpm, { hierarchy: TPM_RH.ENDORSEMENT, template: EK_TEMPLATE_RSA2048 }));
    await new Promise((r) => setTimeout(r, 50));
    f.proc.signal('SIGKILL');
    const { ms, error } = await pending;
    assert.ok(isTrustlaunchError(error, 'TPM_TRANSPORT_ERROR'), String(error));
    assert.ok(ms < 2000, `${ms} ms`);
    await f.proc.exited;
    const again = await timed(getRandom(tpm, 8));
    assert.ok(isTrustlaunchError(again.error, 'TPM_TRANSPORT_ERROR'), String(again.error));
    assert.ok(again.ms < 2000);
    await tpm.close();
    // A new swtpm over the same state: the half-made transient died with the old process.
    await f.restart();
  });
});
