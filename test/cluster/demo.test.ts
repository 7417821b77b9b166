// `trustlaunch demo` runs in the suite: it must exit 0 (it does so only when every step
// went as told: the launch verified, ssh ran a command in the VM, the tampered image was
// refused with nothing written), tell each step, and leave no process behind.
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { requireCommand } from '../support/system.js';
import { processesUnder, run } from './support/cloud.js';

const BIN = new URL('../../bin/trustlaunch.js', import.meta.url).pathname;

describe('trustlaunch demo', () => {
  it('runs the whole story and exits 0, leaving nothing behind', async () => {
    for (const tool of ['/usr/sbin/sshd', 'ssh', 'ssh-keygen', 'ssh-keyscan']) requireCommand(tool);
    const r = await run(process.execPath, [BIN, 'demo'], { timeoutMs: 300_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    for (const step of ['1. The cloud comes up', '2. You pin the CA', '3. You ask the manager for a VM', '4. The receipt', '5. You log in', '6. An attack', '7. Cleaning up', 'Done.']) {
      assert.ok(r.stdout.includes(step), `missing: ${step}`);
    }
    assert.match(r.stdout, /is trusted: the CA affirms it/);
    assert.match(r.stdout, /hello from the VM: logged in over ssh as /);
    assert.match(r.stdout, /error: RECEIPT_CONTRAINDICATED: .*KERNEL_NOT_ALLOWED/);
    assert.match(r.stdout, /Caught: /);
    const dir = /everything lives in (\S+) and is removed/.exec(r.stdout)?.[1];
    assert.ok(dir?.startsWith(join(tmpdir(), 'trustlaunch-demo-')));
    assert.deepEqual(await processesUnder(dir as string), []);
  });
});
