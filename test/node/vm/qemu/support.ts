// Test support for QEMU VMs: the project's guest (built by scripts/build-guest.sh when
// missing), a hypervisor on the software TPM with the real QEMU backend, and oracles
// that do not ask the backend: QEMU processes found in /proc by their executable, and
// loopback ports probed by binding them.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { VmImageBundle } from '../../../../src/node/hypervisor/index.js';
import { openQemuVmBackend, type QemuVmBackend, type QemuVmBackendOptions } from '../../../../src/node/vm/qemu/index.js';
import { readGuestBundle, type GuestBundle } from '../../../../src/node/vm/qemu/guest-image.js';
import { ensureGuestImage } from '../../../support/qemu.js';
import { requireCommand } from '../../../support/system.js';
import { bootBackendNode, testRuntimeRoot, type BackendNode } from '../support.js';

export const MiB = 1024 * 1024;
/** TCG on a loaded 2-core machine; a boot typically takes 3-5 s. */
export const BOOT_MS = 180_000;

/** The project's QEMU guest, built when missing (a no-op when up to date). */
export function guest(): GuestBundle {
  requireCommand('qemu-system-x86_64');
  return readGuestBundle(ensureGuestImage().dir);
}

/** The bundle's parts as dom0 would read them from disk. */
export function bundleFrom(g: GuestBundle): VmImageBundle {
  return { kernel: readFileSync(g.kernelPath), initrd: readFileSync(g.initrdPath), cmdline: readFileSync(g.cmdlinePath) };
}

export type QemuNode = BackendNode<QemuVmBackend>;

/** The real hypervisor (software TPM) with the real QEMU backend as its VM runner; no CA. */
export async function bootQemuNode(options: Omit<QemuVmBackendOptions, 'runtimeRoot'> & { runtimeRoot?: string } = {}): Promise<QemuNode> {
  requireCommand('qemu-system-x86_64');
  const root = testRuntimeRoot(options.runtimeRoot, 'tl-qvm-');
  // No mini-domain attests here, so no certificate comes: `ready` reaches dom0 at once unless a test says otherwise.
  const backend = await openQemuVmBackend({ certificateWaitMs: 0, ...options, runtimeRoot: root.runtimeRoot });
  return bootBackendNode(backend, root, { hostMemoryBytes: 8 * 1024 * MiB });
}

/** Every running QEMU (by its executable) whose command line names `needle` — the backend is not asked. */
export function qemuProcessesNaming(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      if (!readlinkSync(`/proc/${entry}/exe`).includes('qemu-system')) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      if (/\) [ZX] /.test(stat)) continue; // a zombie no longer runs
      if (readFileSync(`/proc/${entry}/cmdline`).includes(Buffer.from(needle))) found.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/** Polls `check` every 50 ms until it holds, at most `ms`. */
export async function waitUntil(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}
