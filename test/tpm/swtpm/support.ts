// Real swtpm fixtures for the TPM client and swtpm tests: a TPM manufactured once per test
// file (swtpm_setup with the node-local CA config, ~1 s), started in a temporary directory,
// stopped in `after`, and checks that nothing is left behind (no transient handle, no
// session, no swtpm process).
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TpmClient } from '../../../src/tpm/client/client.js';
import { getHandles } from '../../../src/tpm/client/commands/capability.js';
import { startupClear } from '../../../src/tpm/client/commands/startup.js';
import { TPM_HT } from '../../../src/tpm/constants.js';
import { SocketTransport } from '../../../src/tpm/client/socket-transport.js';
import { manufactureSwtpm, swtpmLayout, type SwtpmLayout } from '../../../src/tpm/swtpm/manufacture.js';
import { SwtpmProcess, type SwtpmTransportKind } from '../../../src/tpm/swtpm/process.js';
import { requireCommand } from '../../support/system.js';

/** Every tool these tests run: a missing one fails the test file with a clear message. */
export function requireSwtpmTools(): void {
  for (const tool of ['swtpm', 'swtpm_setup', 'swtpm_localca', 'setpriv', 'openssl']) requireCommand(tool);
}

const manufactured = new Map<string, Promise<SwtpmLayout>>();

/** A manufactured node TPM (EKs and certificates), made once per process and copied for each fixture. */
async function template(): Promise<SwtpmLayout> {
  let t = manufactured.get('default');
  if (t === undefined) {
    t = (async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tl-swtpm-template-'));
      process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
      const layout = swtpmLayout(dir);
      await manufactureSwtpm(layout);
      return layout;
    })();
    manufactured.set('default', t);
  }
  return t;
}

export interface SwtpmFixture {
  readonly dir: string;
  readonly layout: SwtpmLayout;
  proc: SwtpmProcess;
  transport: SocketTransport;
  tpm: TpmClient;
  /** TPM2TOOLS_TCTI for tpm2-tools against this swtpm. */
  readonly env: () => Record<string, string>;
  /** Stops and starts swtpm again over the same state (a power cycle: PCRs reset, NV and persistent objects stay). */
  restart(): Promise<void>;
  /** Stops swtpm, checks the process is gone, removes the directory. */
  dispose(): Promise<void>;
}

export interface FixtureOptions {
  readonly transport?: SwtpmTransportKind;
  /** false: an empty TPM without EKs (faster, for tests that need none). */
  readonly manufactured?: boolean;
  readonly timeoutMs?: number;
}

export async function startSwtpmFixture(options: FixtureOptions = {}): Promise<SwtpmFixture> {
  requireSwtpmTools();
  const dir = mkdtempSync(join(tmpdir(), 'tl-swtpm-'));
  const layout = swtpmLayout(dir);
  if (options.manufactured !== false) cpSync((await template()).nodeDir, dir, { recursive: true });
  const start = async (): Promise<{ proc: SwtpmProcess; transport: SocketTransport; tpm: TpmClient }> => {
    const proc = await SwtpmProcess.start({ stateDir: layout.stateDir, transport: options.transport ?? 'tcp' });
    const transport = new SocketTransport(proc.data);
    const tpm = new TpmClient(transport, { timeoutMs: options.timeoutMs ?? 15_000 });
    try {
      await startupClear(tpm);
    } catch (e) {
      await tpm.close();
      await proc.stop();
      throw e;
    }
    return { proc, transport, tpm };
  };
  let first: Awaited<ReturnType<typeof start>>;
  try {
    first = await start();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const f: SwtpmFixture = {
    dir,
    layout,
    ...first,
    env: () => ({ TPM2TOOLS_TCTI: f.proc.tcti }),
    async restart() {
      await f.tpm.close();
      await f.proc.stop();
      Object.assign(f, await start());
    },
    async dispose() {
      await f.tpm.close();
      await f.proc.stop();
      assertProcessGone(f.proc.pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return f;
}

export function assertProcessGone(pid: number): void {
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `swtpm ${pid} is still running`);
}

/** Transient objects and sessions currently in the TPM (a TPM without a resource manager shows them all). */
export async function loadedHandles(tpm: TpmClient): Promise<number[]> {
  return [...(await getHandles(tpm, TPM_HT.TRANSIENT)), ...(await getHandles(tpm, TPM_HT.HMAC_SESSION)), ...(await getHandles(tpm, TPM_HT.POLICY_SESSION))];
}

export async function assertNoLoadedHandles(tpm: TpmClient): Promise<void> {
  assert.deepEqual((await loadedHandles(tpm)).map((h) => `0x${h.toString(16)}`), [], 'transient objects or sessions were left in the TPM');
}
