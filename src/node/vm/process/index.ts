// The process VM backend (docs/process-vms.md).
//
//   const backend = await openProcessVmBackend({ runtimeRoot });       // reaps leftovers
//   const node = await bootHypervisor({ …, vmRunner: backend.runner });
//   const vm = await node.dom0.buildVm({ name, image: defaultGuestImage(), guest: { hostname, authorizedKeys } });
//   await node.dom0.startVm(vm.vmId);  backend.endpoint(vm.vmId)  →  { host: '127.0.0.1', sshPort }
export { ProcessVmBackend, openProcessVmBackend, type ProcessVmBackendOptions, type ProcessVmInspection } from './backend.js';
export { CHANNEL_MAX_LINE, LineSplitter, bridgeChannel, decodeGuestLine, type ChannelBridge, type ChannelStats, type DropReason } from '../channel-bridge.js';
export { ConsoleLog } from '../console-log.js';
export { defaultGuestImage, defaultGuestImagePath, padGuestImage } from './image.js';
export { launchProcessVm, type LaunchProcessVmRequest, type ProcessVmLaunch } from './launch.js';
export { DEFAULT_MIN_CHARGE_BYTES, MemoryLedger } from '../memory-ledger.js';
export { DEFAULT_PORT_RANGE, type PortRange } from '../ports.js';
export { MARKER_VARIABLE, vmProcesses, type VmIdentity } from '../proc.js';
export type { GuestEvent, GuestExit, Timeline } from './process-vm.js';
export type { ReapedVm } from '../reaper.js';
export { defaultRuntimeRoot } from '../runtime-dir.js';
