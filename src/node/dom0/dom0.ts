// dom0, the node agent for the manager (DESIGN.md §3.2) — untrusted. It holds the
// hardware domain's capability, the node's disk (images, the mini-domain image) and the
// VM backend's node-facing side; it never holds the device, a VM channel or a host key.
import type { Digest } from '../../protocol/digest.js';
import type { Dom0Capability, MiniDomainExit } from '../hypervisor/index.js';
import type { NodeView } from './api.js';
import type { ImageStore } from './images.js';
import { MiniDomainLoader, type LoaderLog } from './minidomain-loader.js';
import { Dom0Vms, type Dom0VmBackend } from './vms.js';

export interface Dom0Options {
  readonly nodeId: string;
  readonly capability: Dom0Capability;
  readonly images: ImageStore;
  readonly backend: Dom0VmBackend;
  readonly miniDomainImage: string;
  readonly limits: { readonly memoryMiB: number; readonly maxVms: number };
  /** What the node's status shows (from the hypervisor's status: kind, BDF, frozen digest). */
  readonly device: { readonly kind: string; readonly bdf: string };
  readonly miniDomainDigest: Digest;
  readonly attestation: 'on' | 'off';
  readonly log?: LoaderLog;
}

export class Dom0 {
  readonly capability: Dom0Capability;
  readonly images: ImageStore;
  readonly vms: Dom0Vms;
  readonly loader: MiniDomainLoader;
  readonly #o: Dom0Options;
  readonly #backend: Dom0VmBackend;

  constructor(o: Dom0Options) {
    this.#o = o;
    this.#backend = o.backend;
    this.capability = o.capability;
    this.images = o.images;
    this.vms = new Dom0Vms(o.capability, o.images, o.backend, o.limits);
    this.loader = new MiniDomainLoader(o.capability, o.miniDomainImage, o.log);
  }

  /** The hypervisor's mini-domain exit hook (boot option `onMiniDomainExit`). */
  onMiniDomainExit(exit: MiniDomainExit): void {
    this.loader.onExit(exit);
  }

  nodeView(): NodeView {
    const usage = this.vms.usage();
    const mini = this.capability.miniDomain();
    const accel = this.#backend.accelerator?.();
    return {
      id: this.#o.nodeId,
      capacity: { memoryMiB: { total: this.#o.limits.memoryMiB, used: usage.memoryMiB }, maxVms: this.#o.limits.maxVms },
      vmCount: usage.vms,
      health: mini.state === 'running' ? 'ok' : 'degraded',
      device: { ...this.#o.device },
      miniDomain: { state: mini.state, launches: mini.launches, digest: this.#o.miniDomainDigest },
      attestation: this.#o.attestation,
      vm: {
        backend: this.#backend.kind,
        ...(accel === undefined ? {} : { accelerator: { setting: accel.setting, accel: accel.chosen?.accel ?? null, reason: accel.chosen?.reason ?? null } }),
      },
    };
  }

  close(): void {
    this.loader.close();
  }
}
