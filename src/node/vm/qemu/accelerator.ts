// KVM when it really works, TCG otherwise (docs/qemu-vms.md "KVM or TCG"). /dev/kvm
// opening read-write is not enough: some hosts offer a /dev/kvm on which a stock kernel
// does not boot (a paravirtual nested KVM, "kvm-pvm": `-cpu host` aborts, and with the
// default CPU the kernel hangs right after decompression). So the probe boots the guest's
// own kernel and initramfs under `-accel kvm` with `rdinit=/bin/echo <marker>` and looks
// for the kernel running its init on the console. The choice is cached per host boot and
// kernel (a file under the per-boot runtime base) and shared in this process, so a node
// pays for the probe once. `TRUSTLAUNCH_QEMU_ACCEL=kvm|tcg` forces it when the node's
// setting is `auto`. Both accelerators run exactly the same measured bytes: the choice is
// about speed, not trust.
import { spawn } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../../../protocol/digest.js';
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
  readonly kernelDigest: Digest;
}

export const KVM_PROBE_TIMEOUT_MS = 15_000;
const KVM_PROBE_MARKER = 'trustlaunch-kvm-probe-ok';
/** The kernel's own line when it starts init (printed without `quiet`), or the marker /bin/echo prints. */
const BOOTED = [KVM_PROBE_MARKER, 'Run /bin/echo as init process'];

const choices = new Map<string, Promise<AcceleratorChoice>>();

/** The accelerator for VMs booting `image`: forced by the setting (or the environment when `auto`), else probed once per host boot and kernel. */
export function chooseAccelerator(setting: AcceleratorSetting, image: ProbeImage): Promise<AcceleratorChoice> {
  if (setting !== 'auto') return Promise.resolve({ accel: setting, reason: `the node's setting (accelerator ${setting})` });
  const forced = process.env['TRUSTLAUNCH_QEMU_ACCEL'];
  if (forced === 'kvm' || forced === 'tcg') return Promise.resolve({ accel: forced, reason: `TRUSTLAUNCH_QEMU_ACCEL=${forced}` });
  let choice = choices.get(image.kernelDigest);
  if (choice === undefined) {
    choice = probeOrCached(image);
    choices.set(image.kernelDigest, choice);
  }
  return choice;
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
  const cache = join(base, `kvm-probe-${bootId}-${image.kernelDigest.slice(7, 23)}.json`);
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
    const consoleLog = join(dir, 'console.log');
    const child = spawn(
      image.qemu,
      [
        '-accel', 'kvm', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-m', '128', '-smp', '1',
        '-kernel', image.kernelPath, ...(image.initrdPath === undefined ? [] : ['-initrd', image.initrdPath]),
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
