// Builds the capability objects domains receive. Each is a frozen object of closures
// over the hypervisor with the holder's domain id fixed, so a domain can only ever act as
// itself; no property leads back to the hypervisor, the device, or another domain.
import type { Dom0Capability, DomainCapability, MiniDomainCapability, MiniDomainDevice, MiniDomainLaunch, VmCapability, VmReport } from './capabilities.js';
import type { DomainId } from './domain-id.js';
import type { Hypervisor } from './hypervisor.js';
import type { VmChannelEndpoint } from './vm-channel.js';

function domainCapability(hv: Hypervisor, id: DomainId): DomainCapability {
  return {
    domainId: id,
    memory: Object.freeze({
      get size() {
        return hv.memorySize(id);
      },
      read: (gpa: number, length: number) => hv.readMemory(id, gpa, length),
      write: (gpa: number, bytes: Uint8Array) => hv.writeMemory(id, gpa, bytes),
    }),
    iommu: Object.freeze({
      map: (iovaPfn: number, gfn: number, perm: { r: boolean; w: boolean }) => hv.map(id, iovaPfn, gfn, perm),
      unmap: (iovaPfn: number) => hv.unmap(id, iovaPfn),
    }),
    mmio: (access) => hv.mmio(id, access),
    dma: (bdf, request) => hv.dma(id, bdf, request),
  };
}

export function makeDom0Capability(hv: Hypervisor, id: DomainId): Dom0Capability {
  return Object.freeze({
    ...domainCapability(hv, id),
    devices: () => hv.devices(),
    assignDevice: (bdf: string, vmId: DomainId) => hv.assignDevice(id, bdf, vmId),
    deassignDevice: (bdf: string) => hv.deassignDevice(id, bdf),
    // async: a refusal before the gate's first step is a rejection, like every later one.
    launchMiniDomain: async (image: Uint8Array | ArrayBuffer) => {
      hv.live(id);
      return hv.launchMiniDomain(image);
    },
    stopMiniDomain: () => hv.stopMiniDomain(),
    miniDomain: () => hv.miniDomainStatus(),
    buildVm: async (request) => {
      hv.live(id);
      return hv.vms.build(request);
    },
    startVm: (vmId: DomainId) => hv.vms.start(vmId),
    destroyVm: (vmId: DomainId) => hv.vms.destroy(vmId),
    vm: (vmId: DomainId) => hv.vms.info(vmId),
    vms: () => hv.vms.infos(),
  } satisfies Dom0Capability);
}

export function makeMiniDomainCapability(hv: Hypervisor, id: DomainId, authDevice: MiniDomainDevice, launch: MiniDomainLaunch): MiniDomainCapability {
  return Object.freeze({
    ...domainCapability(hv, id),
    nodeId: hv.nodeId,
    authDevice,
    launch,
    eventLog: () => {
      hv.live(id);
      return hv.measured.events();
    },
    vmReports: () => {
      hv.live(id);
      return hv.reports.list().map((r) => hv.vms.report(r));
    },
    onVmReport: (listener: (report: VmReport) => void) => {
      hv.live(id);
      return hv.reports.subscribe((r) => {
        // A listener of a destroyed mini-domain hears nothing more.
        if (hv.domains.get(id)?.state === 'running') listener(hv.vms.report(r));
      });
    },
    waitForVmReport: async (vmId: DomainId, timeoutMs: number) => {
      hv.live(id);
      hv.vms.info(vmId);
      return hv.vms.report(await hv.reports.wait(vmId, timeoutMs));
    },
    sendHostCertificate: (vmId: DomainId, certificate: string) => {
      hv.live(id);
      hv.vms.sendHostCertificate(vmId, certificate);
    },
    setAttestation: (vmId, update) => {
      hv.live(id);
      hv.vms.setAttestation(vmId, update);
    },
    kickWatchdog: () => hv.kickWatchdog(id),
  } satisfies MiniDomainCapability);
}

export function makeVmCapability(hv: Hypervisor, id: DomainId, channel: VmChannelEndpoint): VmCapability {
  return Object.freeze({ ...domainCapability(hv, id), vmId: id, channel } satisfies VmCapability);
}
