// QEMU's command line for one VM (docs/qemu-vms.md "The QEMU command line"). Everything
// the guest boots is a path inside the VM's private directory — the hypervisor's measured
// copies of kernel and initramfs — and the kernel command line is the measured one. The
// guest gets: 1 vCPU, `-m` of its declared memory, a virtio-net NIC on user-mode
// networking that reaches nothing (`restrict=on`) but for one forwarded loopback port,
// virtio-rng, and a virtio-serial port named for the VM channel whose chardev is a unix
// socket in the private directory. The serial console is QEMU's stdio (dom0's console).
import type { Accelerator } from './accelerator.js';

/** The virtio-serial port name the guest looks for (docs/vm-channel.md). */
export const CHANNEL_PORT_NAME = 'org.trustlaunch.channel.0';
/** The channel socket's name; QEMU runs in the VM directory, so the path stays short. */
export const CHANNEL_SOCKET = 'channel.sock';
export const KERNEL_FILE = 'vmlinuz';
export const INITRD_FILE = 'initrd.img';

export interface QemuArgs {
  readonly accel: Accelerator;
  readonly memoryMiB: number;
  readonly vcpus: number;
  /** Absolute paths of the hypervisor's copies. */
  readonly kernelPath: string;
  readonly initrdPath?: string | undefined;
  /** The measured command line, exactly. */
  readonly cmdline: string;
  /** 127.0.0.1:<sshPort> is forwarded to the guest's port 22. */
  readonly sshPort: number;
  /** `-sandbox on,…` (seccomp: no privilege changes, no spawning, no obsolete calls). */
  readonly sandbox: boolean;
}

export function qemuArgs(a: QemuArgs): string[] {
  return [
    '-accel', a.accel,
    ...(a.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    ...(a.sandbox ? ['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny'] : []),
    '-m', String(a.memoryMiB), '-smp', String(a.vcpus),
    '-kernel', a.kernelPath,
    ...(a.initrdPath === undefined ? [] : ['-initrd', a.initrdPath]),
    '-append', a.cmdline,
    // The serial console is QEMU's stdio: what dom0 reads (and may type into) — never the channel.
    '-chardev', 'stdio,id=console0,signal=off', '-serial', 'chardev:console0',
    // restrict=on: the guest reaches nothing outside; only the forwarded port reaches it.
    '-netdev', `user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:${a.sshPort}-:22`,
    '-device', 'virtio-net-pci,netdev=net0,romfile=',
    '-device', 'virtio-rng-pci',
    '-device', 'virtio-serial-pci',
    '-chardev', `socket,id=channel0,path=${CHANNEL_SOCKET},server=on,wait=off`,
    '-device', `virtserialport,chardev=channel0,name=${CHANNEL_PORT_NAME}`,
  ];
}
