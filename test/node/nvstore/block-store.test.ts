// The pci-nvstore medium and the TPM state layout on it: atomic replacement through two
// slots (a torn or damaged newest slot falls back to the older one), strict superblock,
// bounded lengths read from the medium before any allocation, and a medium file refused
// when others could read it (it holds keys).
import assert from 'node:assert/strict';
import { chmodSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { createMediumFile, openMediumFile } from '../../../src/tpm/nvstore/medium.js';
import { BlockStateStore, formatBlockStore } from '../../../src/tpm/nvstore/state-store.js';
import { manufactureNvStore } from '../../../src/tpm/nvstore/manufacture.js';
import { TpmEngine } from '../../../src/tpm/sim/engine.js';
import { tempDir } from '../../support/system.js';

const dir = tempDir('tl-nvblocks-');
after(() => dir.dispose());
let n = 0;

async function freshMedium(blocks = 256): Promise<string> {
  const path = join(dir.path, `medium-${n++}.img`);
  await createMediumFile(path, blocks);
  return path;
}

/** Overwrites bytes of the medium file at `offset` (the outside world damaging the flash). */
async function damage(path: string, offset: number, bytes: Uint8Array): Promise<void> {
  const f = await open(path, 'r+');
  await f.write(bytes, 0, bytes.length, offset);
  await f.close();
}

void describe('pci-nvstore medium and state layout', () => {
  void it('stores and loads, alternating slots, the newest generation winning', async () => {
    const medium = await openMediumFile(await freshMedium());
    await formatBlockStore(medium);
    const store = new BlockStateStore(medium);
    assert.equal(await store.load(), undefined);
    for (let i = 0; i < 5; i++) {
      const state = Buffer.from(`state ${i} `.repeat(100 + i));
      await store.store(state);
      assert.deepEqual(Buffer.from((await new BlockStateStore(medium).load()) ?? []), state);
    }
    await medium.close();
  });

  void it('falls back to the older slot when the newest is damaged, and fails closed when both are', async () => {
    const path = await freshMedium();
    const medium = await openMediumFile(path);
    await formatBlockStore(medium);
    const store = new BlockStateStore(medium);
    await store.store(Buffer.from('older'));
    await store.store(Buffer.from('newer')); // slot B (block 1 + 127)
    const slotBlocks = Math.floor((256 - 1) / 2);
    await damage(path, (1 + slotBlocks + 1) * 512, Buffer.from('X')); // B's data
    assert.equal(Buffer.from((await new BlockStateStore(medium).load()) ?? []).toString(), 'older');
    await damage(path, 1 * 512 + 20, Buffer.from([0xff])); // A's header digest
    await assert.rejects(new BlockStateStore(medium).load(), (e) => isTrustlaunchError(e, 'NVSTORE_CORRUPT') && /both/.test(e.message));
    await medium.close();
  });

  void it('never allocates what a damaged header claims', async () => {
    const path = await freshMedium();
    const medium = await openMediumFile(path);
    await formatBlockStore(medium);
    const store = new BlockStateStore(medium);
    await store.store(Buffer.from('good'));
    // Slot B gets a header claiming 3 GB; its own checksum is right, its length is not.
    const { createHash } = await import('node:crypto');
    const h = Buffer.alloc(512);
    h.write('TLSLOT01', 0, 'latin1');
    h.writeBigUInt64BE(9n, 8);
    h.writeUInt32BE(3_000_000_000, 16);
    createHash('sha256').update(h.subarray(0, 52)).digest().copy(h, 52);
    await damage(path, (1 + 127) * 512, h);
    assert.equal(Buffer.from((await new BlockStateStore(medium).load()) ?? []).toString(), 'good');
    await assert.rejects(store.store(Buffer.alloc(store.maxStateBytes + 1)), (e) => isTrustlaunchError(e, 'NV_SIZE_EXCEEDED'));
    await medium.close();
  });

  void it('refuses an unformatted medium, a foreign superblock, and another geometry', async () => {
    const path = await freshMedium();
    const medium = await openMediumFile(path);
    await assert.rejects(new BlockStateStore(medium).load(), (e) => isTrustlaunchError(e, 'NVSTORE_CORRUPT') && /never formatted/.test(e.message));
    await damage(path, 0, Buffer.from('NOTMAGIC'));
    await assert.rejects(new BlockStateStore(medium).load(), (e) => isTrustlaunchError(e, 'NVSTORE_CORRUPT'));
    await formatBlockStore(medium);
    await damage(path, 16, Buffer.from([0, 0, 9, 9])); // block count field
    await assert.rejects(new BlockStateStore(medium).load(), (e) => isTrustlaunchError(e, 'NVSTORE_CORRUPT') && /checksum/.test(e.message));
    await medium.close();
  });

  void it('refuses medium files others could read, symlinks, wrong sizes; does not replace one by accident', async () => {
    const path = await freshMedium();
    chmodSync(path, 0o644);
    await assert.rejects(openMediumFile(path), (e) => isTrustlaunchError(e, 'FILE_INSECURE'));
    chmodSync(path, 0o600);
    const link = join(dir.path, `link-${n++}`);
    symlinkSync(path, link);
    await assert.rejects(openMediumFile(link), (e) => isTrustlaunchError(e, 'FILE_INSECURE'));
    const odd = join(dir.path, `odd-${n++}`);
    writeFileSync(odd, Buffer.alloc(1000), { mode: 0o600 });
    await assert.rejects(openMediumFile(odd), (e) => isTrustlaunchError(e, 'NVSTORE_CORRUPT'));
    await assert.rejects(createMediumFile(path), (e) => isTrustlaunchError(e, 'CONFLICT'));
  });

  void it('manufacturing leaves a TPM state with EKs the engine loads', async () => {
    const sub = join(dir.path, `made-${n++}`);
    const made = await manufactureNvStore(sub, { algorithms: ['ecc-p256', 'rsa2048'] });
    assert.deepEqual([...made.endorsementKeys.keys()].sort(), ['ecc-p256', 'rsa2048']);
    const medium = await openMediumFile(made.mediumPath);
    const engine = await TpmEngine.load(new BlockStateStore(medium));
    await engine.startup();
    assert.equal(engine.hasObject(0x81010002), true);
    await engine.shutdown();
    await medium.close();
    await assert.rejects(manufactureNvStore(sub), (e) => isTrustlaunchError(e, 'CONFLICT'));
  });
});
