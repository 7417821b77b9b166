// The hypervisor's public API for the rest of the node (docs/hypervisor.md). The node
// boots it with `bootHypervisor` and hands `dom0` to the untrusted agent; the
// mini-domain and VM runners receive their capabilities through their entry hooks.
export { bootHypervisor, type HypervisorBootOptions, type HypervisorNode, type HypervisorStatus } from './boot.js';
export type {
  AttestationState,
  AttestationUpdate,
  DeviceDmaRequest,
  DeviceInfo,
  Dom0Capability,
  DomainCapability,
  DomainExecution,
  IoPageTableCapability,
  MeasuredPart,
  MediatedTpmDevice,
  MemoryCapability,
  MiniDomainBoot,
  MiniDomainCapability,
  MiniDomainDevice,
  MiniDomainEntry,
  MiniDomainLaunch,
  MiniDomainStatus,
  NvStoreDevicePort,
  PlatformPcrPort,
  VmAttestation,
  VmBoot,
  VmBuildRequest,
  VmCapability,
  VmInfo,
  VmImageBundle,
  VmLaunchMetadata,
  VmMeasurements,
  VmReport,
  VmRunner,
} from './capabilities.js';
export { DOMID_HARDWARE, DOMID_IO, type DomainId, type DomainRole, type DomainState } from './domain-id.js';
export { DEFAULT_LIMITS, type HypervisorLimits, type MiniDomainExit } from './hypervisor.js';
export { NVS, NVS_CMD, NVS_ID_VALUE, NVS_STS } from './devices/nvstore.js';
export type { DmaResult, PagePermission } from './iommu.js';
export { InvariantViolation, type InvariantName } from './invariants.js';
export type { GateStep } from './launch-gate.js';
export { BootConfigSchema, bootConfigBytes, parseBootConfig, type BootConfig, type LaunchPolicy } from './launch-policy.js';
export type { PlatformMeasurement, RemeasureOutcome } from './measured-boot.js';
export type { MmioAccess } from './mmio.js';
export { AUTH_DEVICE_NVSTORE, AUTH_DEVICE_TPM, PLATFORM_DEVICES, type PciDeviceSpec } from './pci.js';
export type { PlatformSnapshot } from './platform.js';
export type { SecurityEvent, SecurityEventKind } from './security-events.js';
export { createVmChannelPair, type VmChannelEndpoint, type VmChannelMessage } from './vm-channel.js';
export { FAULT_REASON, type FaultRecord } from './vtd/fault.js';
