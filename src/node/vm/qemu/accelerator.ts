// KVM when it really works, TCG otherwise (docs/qemu-vms.md "KVM or TCG"). /dev/kvm
// opening read-write is not enough: some hosts offer a /dev/kvm on which a stock kernel
// does not boot (a paravirtual nested KVM, "kvm-pvm": `-cpu host` aborts, and with the
// default CPU the kernel hangs right after decompression). So the probe boots a guest
// kernel (the first VM's) under `-accel kvm` with `rdinit=/bin/echo <marker>` and looks
// for the kernel running its init on the console. The answer is a property of the host:
// it is cached per host boot (a file under the per-boot runtime base) and shared in this
// process, so a node pays for the probe once. A boot waits for the probe only briefly:
// where KVM works the probe answers within a second; where it does not, the probe runs
// into its timeout in the background while the first VMs boot under TCG.
// `TRUSTLAUNCH_QEMU_ACCEL=kvm|tcg` forces the choice when the node's setting is `auto`.
// Both accelerators run exactly the same measured bytes: the choice is about speed, not trust.
import { spawn } from 'node:child_process';
import { closeSync, constants, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensurePrivateDir, runtimeBase } from '../runtime-dir.js';

export type Accelerator = 'kvm' | 'tcg';
export type AcceleratorSetting = 'auto' | Accelerator;

export interface AcceleratorChoice {
  readonly accel: Accelerator;
  /** Why: shown in the node's status and in benchmark notes. */
  readonly reason: string;
}

export interface ProbeImage {
  readonly qemu: string;
  readonly kernelPath: string;
  readonly initrdPath?: string | undefined;
}

export const KVM_PROBE_TIMEOUT_MS = 15_000;
/** How long a boot waits for an unfinished probe before it goes ahead under TCG. */
export const PROBE_WAIT_MS = 2_000;
const KVM_PROBE_MARKER = 'trustlaunch-kvm-probe-ok';
/** The kernel's own line when it starts init (printed without `quiet`), or the marker /bin/echo prints. */
const BOOTED = [KVM_PROBE_MARKER, 'Run /bin/echo as init process'];

let probe: Promise<AcceleratorChoice> | undefined;

/**
 * The accelerator for a VM booting `image`: forced by the setting (or by the environment
 * when `auto`), else the host's probed answer. With `waitMs`, a probe still running after
 * that long gives TCG for this VM (the probe goes on for the next ones).
 */
export async function chooseAccelerator(setting: AcceleratorSetting, image: ProbeImage, waitMs = Number.POSITIVE_INFINITY): Promise<AcceleratorChoice> {
  if (setting !== 'auto') return { accel: setting, reason: `the node's setting (accelerator ${setting})` };
  const forced = process.env['TRUSTLAUNCH_QEMU_ACCEL'];
  if (forced === 'kvm' || forced === 'tcg') return { accel: forced, reason: `TRUSTLAUNCH_QEMU_ACCEL=${forced}` };
  probe ??= probeOrCached(image).catch((e: unknown) => ({ accel: 'tcg' as const, reason: `the KVM probe failed: ${e instanceof Error ? e.message : String(e)}` }));
  if (!Number.isFinite(waitMs)) return probe;
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<AcceleratorChoice>((resolve) => {
    timer = setTimeout(() => resolve({ accel: 'tcg', reason: `the KVM probe had not answered within ${waitMs} ms (it goes on for later VMs)` }), waitMs);
  });
  try {
    return await Promise.race([probe, waited]);
  } finally {
    clearTimeout(timer);
  }
}

async function probeOrCached(image: ProbeImage): Promise<AcceleratorChoice> {
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
  } catch (e) {
    return { accel: 'tcg', reason: `/dev/kvm cannot be opened read-write (${(e as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  const base = runtimeBase();
  ensurePrivateDir(base);
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  const cache = join(base, `kvm-probe-${bootId}.json`);
  const cached = readCachedChoice(cache);
  if (cached !== undefined) return { accel: cached.accel, reason: `${cached.reason} (probed earlier this boot)` };
  const choice = await probeKvm(image);
  writeFileSync(cache, JSON.stringify(choice), { mode: 0o600 });
  return choice;
}

function readCachedChoice(path: string): AcceleratorChoice | undefined {
  try {
    if (statSync(path).size > 4096) return undefined;
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<AcceleratorChoice>;
    return (v.accel === 'kvm' || v.accel === 'tcg') && typeof v.reason === 'string' ? { accel: v.accel, reason: v.reason.slice(0, 512) } : undefined;
  } catch {
    return undefined; // absent or unreadable: probe again
  }
}

/** Boots the kernel under KVM with `echo` as init: its line on the console proves the kernel ran. */
async function probeKvm(image: ProbeImage): Promise<AcceleratorChoice> {
  const dir = mkdtempSync(join(runtimeBase(), 'kvm-probe-'));
  try {
    // Copies of its own: the VM whose files these are may be gone before the probe ends.
    const kernelPath = join(dir, 'vmlinuz');
    copyFileSync(image.kernelPath, kernelPath);
    const initrdPath = image.initrdPath === undefined ? undefined : join(dir, 'initrd.img');
    if (initrdPath !== undefined && image.initrdPath !== undefined) copyFileSync(image.initrdPath, initrdPath);
    const consoleLog = join(dir, 'console.log');
    const child = spawn(
      image.qemu,
      [
        '-accel', 'kvm', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-m', '128', '-smp', '1',
        '-kernel', kernelPath, ...(initrdPath === undefined ? [] : ['-initrd', initrdPath]),
        '-serial', `file:${consoleLog}`,
        '-append', `console=ttyS0 panic=-1 rdinit=/bin/echo -- ${KVM_PROBE_MARKER}`,
      ],
      { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString('utf8');
    });
    const exited = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), KVM_PROBE_TIMEOUT_MS);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
      child.once('error', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!exited) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await gone;
    }
    const console = existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '';
    const lines = console.split(/\r?\n/).map((l) => l.trim());
    if (lines.some((l) => BOOTED.some((b) => l === b || l.endsWith(`] ${b}`)))) return { accel: 'kvm', reason: '/dev/kvm opens read-write and the guest kernel boots under -accel kvm' };
    if (!exited) return { accel: 'tcg', reason: `/dev/kvm opens but the guest kernel did not boot under KVM within ${KVM_PROBE_TIMEOUT_MS} ms` };
    const why = stderr.trim().split('\n')[0] ?? '';
    return { accel: 'tcg', reason: `/dev/kvm opens but QEMU with -accel kvm failed: ${why === '' ? `exit ${String(child.exitCode)}` : why}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
