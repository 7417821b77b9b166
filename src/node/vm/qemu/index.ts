// The QEMU VM backend (docs/qemu-vms.md).
//
//   const backend = await openQemuVmBackend({ runtimeRoot, capacityBytes });   // reaps leftovers
//   const node = await bootHypervisor({ …, vmRunner: backend.runner });
//   const vm = await node.dom0.buildVm({ name, image: { kernel, initrd, cmdline }, memoryBytes: 256 << 20,
//                                        guest: { hostname, authorizedKeys } });
//   await node.dom0.startVm(vm.vmId);  backend.endpoint(vm.vmId)  →  { host: '127.0.0.1', sshPort }
export { DEFAULT_OVERHEAD_BYTES, MIN_VM_MEMORY_BYTES, QemuVmBackend, openQemuVmBackend, type QemuVmBackendOptions, type QemuVmInspection } from './backend.js';
export { KVM_PROBE_TIMEOUT_MS, PROBE_WAIT_MS, chooseAccelerator, type Accelerator, type AcceleratorChoice, type AcceleratorSetting, type ProbeImage } from './accelerator.js';
export { CHANNEL_PORT_NAME, CHANNEL_SOCKET, INITRD_FILE, KERNEL_FILE, qemuArgs, type QemuArgs } from './qemu-args.js';
