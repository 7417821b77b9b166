// Booting the hypervisor: parse the node's boot configuration and freeze the launch
// policy from it, take the auth device (the caller hands over a factory and never holds
// the device itself), power it on, measure the platform, the hypervisor and the boot
// configuration, then bring up dom0. What the node gets back is a HypervisorNode: dom0's
// capability for the untrusted agent, and the status, re-measurement and shutdown the
// trusted `trustlaunch node serve` process needs. No member returns the device, a PCR
// bank, the IOMMU or any domain's memory.
import type { AuthDevice } from '../../tpm/auth-device.js';
import type { BlockMedium } from '../../tpm/nvstore/medium.js';
import type { TcgEvent } from '../../tpm/eventlog/event.js';
import type { Digest } from '../../protocol/digest.js';
import type { Dom0Capability, DeviceInfo, MiniDomainEntry, MiniDomainStatus, VmRunner } from './capabilities.js';
import { makeDom0Capability } from './capability-factory.js';
import { DeviceSlot, type PcrHolder } from './device-slot.js';
import { PlatformPcrBank } from './devices/platform-pcrs.js';
import { DOMID_HARDWARE, type DomainId, type DomainRole, type DomainState } from './domain-id.js';
import { DEFAULT_LIMITS, Hypervisor, type HeldAuthDevice, type HypervisorLimits, type MiniDomainExit } from './hypervisor.js';
import type { GateStep } from './launch-gate.js';
import { bootConfigBytes, freezeLaunchPolicy, parseBootConfig, type LaunchPolicy } from './launch-policy.js';
import { MeasuredBoot, type PlatformMeasurement, type RemeasureOutcome } from './measured-boot.js';
import { PLATFORM_DEVICES, formatSourceId, type PciDeviceSpec } from './pci.js';
import type { PlatformSnapshot } from './platform.js';
import { SecurityEventLog, type SecurityEvent } from './security-events.js';
import type { FaultRecord } from './vtd/fault.js';

export interface HypervisorBootOptions {
  /** The node's boot configuration (BootConfigSchema); its canonical bytes are measured into PCR 5. */
  readonly bootConfig: unknown;
  /** What the boot chain measured before the hypervisor: firmware (PCR 0) and the hypervisor image (PCR 4). */
  readonly platform: { readonly firmware: PlatformMeasurement; readonly hypervisor: PlatformMeasurement };
  /** Opens a TPM-like auth device (sim, swtpm, tpm); the hypervisor keeps the only reference. Exactly one of this and `openNvStore`. */
  readonly openAuthDevice?: () => AuthDevice | Promise<AuthDevice>;
  /** Opens the medium of the storage-only pci-nvstore device (the platform PCRs then live in the hypervisor). */
  readonly openNvStore?: () => BlockMedium | Promise<BlockMedium>;
  /** Runs the mini-domain once the launch gate passed (the attestation agent). */
  readonly miniDomain?: MiniDomainEntry;
  /** Runs VMs (process or qemu backend). Without one, a started VM is only a domain in the model. */
  readonly vmRunner?: VmRunner;
  /** PCI devices besides the auth device (default: PLATFORM_DEVICES). */
  readonly platformDevices?: readonly PciDeviceSpec[];
  readonly limits?: Partial<HypervisorLimits>;
  readonly clock?: () => Date;
  /** Observes the launch gate's steps (logging, benchmarks, tests). */
  readonly trace?: (step: GateStep, domainId: DomainId) => void;
  /**
   * Told when a launched mini-domain ended (stopped by dom0, crashed, or hung), after its
   * device went back to quarantine: the node hands the image over again to restart it
   * through the gate (G6). Not called during shutdown.
   */
  readonly onMiniDomainExit?: (exit: MiniDomainExit) => void;
}

export interface HypervisorStatus {
  readonly nodeId: string;
  readonly launchPolicy: { readonly miniDomainDigest: Digest };
  readonly authDevice: { readonly kind: string; readonly description: string; readonly bdf: string; readonly owner: DomainId };
  readonly miniDomain: MiniDomainStatus;
  readonly domains: readonly { readonly id: DomainId; readonly role: DomainRole; readonly state: DomainState; readonly name: string }[];
  readonly devices: readonly DeviceInfo[];
  readonly faults: { readonly total: number; readonly dropped: number };
  readonly securityEvents: { readonly total: number; readonly dropped: number };
  readonly eventLogLength: number;
}

export interface HypervisorNode {
  readonly nodeId: string;
  /** The hardware domain's capability: hand it to dom0, the untrusted node agent. */
  readonly dom0: Dom0Capability;
  /** The frozen launch policy (read-only; any change throws LAUNCH_POLICY_FROZEN and is recorded). */
  readonly launchPolicy: LaunchPolicy;
  status(): HypervisorStatus;
  /** The security event log, oldest first; with `sinceSeq`, only later events. */
  securityEvents(sinceSeq?: number): readonly SecurityEvent[];
  faultRecords(): readonly FaultRecord[];
  /** A copy of the measured-boot event log. */
  eventLog(): TcgEvent[];
  /** After a device power cycle (e.g. swtpm restarted): bring the PCRs back in step with the log. */
  remeasure(): Promise<RemeasureOutcome>;
  /** The mini-domain's code died (when its runner cannot signal through `exited`). */
  reportMiniDomainCrash(reason: string): Promise<void>;
  /** Throws InvariantViolation if an isolation invariant of DESIGN.md §3.1 does not hold. */
  checkInvariants(): void;
  /** Plain data of the isolation state, for "nothing changed" comparisons. */
  snapshot(contents?: boolean): PlatformSnapshot;
  shutdown(): Promise<void>;
}

export async function bootHypervisor(options: HypervisorBootOptions): Promise<HypervisorNode> {
  const limits: HypervisorLimits = Object.freeze({ ...DEFAULT_LIMITS, ...options.limits });
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`limit ${name} must be a positive integer`);
  }
  if (limits.mailboxBytes % 4096 !== 0 || limits.mailboxBytes < 8192) throw new RangeError('limit mailboxBytes must be a multiple of 4096, at least 8192');
  const clock = options.clock ?? (() => new Date());
  const config = parseBootConfig(options.bootConfig);
  const configBytes = bootConfigBytes(config);
  const events = new SecurityEventLog(limits.securityLogCapacity, clock);
  const policy = freezeLaunchPolicy(config, (operation, property) => events.record('LAUNCH_POLICY_FROZEN', null, { operation, property }));

  if ((options.openAuthDevice === undefined) === (options.openNvStore === undefined)) throw new TypeError('give exactly one of openAuthDevice and openNvStore');
  const device = await openDevice(options);
  const slot: DeviceSlot<PcrHolder> = device.slot;
  const measured = new MeasuredBoot(slot);
  try {
    await slot.run((d) => d.powerOn());
    await measured.measureBoot(options.platform.firmware, options.platform.hypervisor, configBytes);
  } catch (e) {
    await slot.run((d) => d.powerOff()).catch(() => undefined);
    if (device.kind === 'pci-nvstore') await device.medium.close().catch(() => undefined);
    throw e;
  }
  const hv = new Hypervisor({
    slot,
    device,
    measured,
    policy,
    events,
    limits,
    platformDevices: options.platformDevices ?? PLATFORM_DEVICES,
    miniDomain: options.miniDomain,
    vmRunner: options.vmRunner,
    clock,
    trace: options.trace,
    onMiniDomainExit: options.onMiniDomainExit,
  });
  return nodeOf(hv);
}

async function openDevice(options: HypervisorBootOptions): Promise<HeldAuthDevice> {
  if (options.openAuthDevice !== undefined) return { kind: 'tpm', slot: new DeviceSlot(await options.openAuthDevice()) };
  const medium = await (options.openNvStore as () => BlockMedium | Promise<BlockMedium>)();
  const pcrs = new PlatformPcrBank(`hypervisor PCR bank; ${medium.description}`);
  return { kind: 'pci-nvstore', medium, pcrs, slot: new DeviceSlot(pcrs) };
}

function nodeOf(hv: Hypervisor): HypervisorNode {
  return Object.freeze({
    nodeId: hv.nodeId,
    dom0: makeDom0Capability(hv, DOMID_HARDWARE),
    launchPolicy: hv.policy,
    status: (): HypervisorStatus => ({
      nodeId: hv.nodeId,
      launchPolicy: { miniDomainDigest: hv.policy.miniDomainDigest },
      authDevice: { kind: hv.deviceKind, description: hv.deviceDescription, bdf: formatSourceId(hv.authSid), owner: hv.platform.ownerOf(hv.authSid) },
      miniDomain: hv.miniDomainStatus(),
      domains: hv.domainViews(),
      devices: hv.devices(),
      faults: hv.platform.iommu.faultTotals,
      securityEvents: { total: hv.events.total, dropped: hv.events.dropped },
      eventLogLength: hv.measured.length,
    }),
    securityEvents: (sinceSeq?: number) => hv.events.list(sinceSeq),
    faultRecords: () => hv.platform.iommu.faultRecords(),
    eventLog: () => hv.measured.events(),
    remeasure: () => hv.remeasure(),
    reportMiniDomainCrash: (reason: string) => hv.miniDomainCrashed(reason),
    checkInvariants: () => hv.checkInvariants(),
    snapshot: (contents?: boolean) => hv.platform.snapshot(contents),
    shutdown: () => hv.shutdown(),
  });
}
