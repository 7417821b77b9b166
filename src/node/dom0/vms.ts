// dom0's VMs (DESIGN.md §3.2): what the manager asked for, by the manager's VM id, and
// how each maps onto a hypervisor domain. Creation checks capacity, reads the image from
// disk — one blob, or a bundle's manifest and the kernel, initramfs and command line it
// names (docs/manager.md "Images") — and asks the hypervisor to build (handing over the
// image's pages) and start the VM, passing the manager's nonce, hostname and authorized
// key as untrusted launch metadata. Views combine dom0's record with what the hypervisor
// and the VM backend say: state, attestation state (written by the mini-domain), SSH
// endpoint (the backend's: where the node forwards, not what the guest claims), digests.
import { z } from 'zod';
import type { Digest } from '../../protocol/digest.js';
import { TrustlaunchError, isTrustlaunchError } from '../../protocol/errors.js';
import { fromBase64url } from '../../protocol/base64url.js';
import { DigestSchema, HostnameSchema, IdSchema, NonceSchema, SshPublicKeySchema, base64urlSchema } from '../../protocol/messages.js';
import { MAX_MANIFEST_BYTES, parseManifest } from '../../manager/images/bundle.js';
import type { Dom0Capability, DomainId, VmImageBundle, VmInfo } from '../hypervisor/index.js';
import type { ImageStore } from './images.js';

/** Images small enough to travel inside POST /v1/vms. */
export const MAX_INLINE_IMAGE_BYTES = 1024 * 1024;

export const VmCreateSchema = z
  .strictObject({
    vmId: IdSchema,
    /** The digest of an image already PUT to this node … */
    image: DigestSchema.optional(),
    /** … or the image itself (base64url), for small images. */
    imageData: base64urlSchema(MAX_INLINE_IMAGE_BYTES).optional(),
    nonce: NonceSchema,
    hostname: HostnameSchema,
    /** The user's login key (the process backend needs one). */
    authorizedKey: SshPublicKeySchema.optional(),
    memoryMiB: z.number().int().min(16).max(1024 * 1024).optional(),
  })
  .refine((r) => (r.image === undefined) !== (r.imageData === undefined), 'give exactly one of image (a digest) and imageData');
export type VmCreate = z.infer<typeof VmCreateSchema>;

export const VmViewSchema = z.strictObject({
  vmId: IdSchema,
  /** booting, running, stopped, crashed, failed. */
  state: z.string(),
  attestation: z.strictObject({ state: z.enum(['booting', 'attesting', 'attested', 'refused']), code: z.string().optional(), message: z.string().optional() }),
  ssh: z.strictObject({ host: z.string(), port: z.number().int() }).optional(),
  kernel: DigestSchema.optional(),
  /** A bundle's initramfs and command line as the hypervisor measured them. */
  initrd: DigestSchema.optional(),
  cmdline: DigestSchema.optional(),
  image: DigestSchema,
  hostname: HostnameSchema,
  memoryMiB: z.number().int(),
  createdAt: z.string(),
});
export type VmView = z.infer<typeof VmViewSchema>;

/** The VM backend as dom0 may use it: capacity and endpoints, never a channel or a key. */
export interface Dom0VmBackend {
  readonly kind: 'process' | 'qemu';
  /** QEMU: the accelerator setting and what the last boot chose (KVM or TCG, and why). */
  accelerator?(): { readonly setting: 'auto' | 'kvm' | 'tcg'; readonly chosen: { readonly accel: 'kvm' | 'tcg'; readonly reason: string } | undefined };
  admit(memoryBytes: number): void;
  endpoint(vmId: DomainId): { readonly host: string; readonly sshPort: number } | undefined;
}

interface Record_ {
  readonly vmId: string;
  image: Digest | undefined;
  readonly hostname: string;
  readonly memoryMiB: number;
  readonly createdAt: string;
  domainId: DomainId | undefined;
  state: 'creating' | 'running' | 'stopped' | 'failed';
  error: { code: string; message: string } | undefined;
  last: VmInfo | undefined;
}

const DEFAULT_MEMORY_MIB = 256;

export class Dom0Vms {
  readonly #cap: Dom0Capability;
  readonly #images: ImageStore;
  readonly #backend: Dom0VmBackend;
  readonly #limits: { readonly memoryMiB: number; readonly maxVms: number };
  readonly #records = new Map<string, Record_>();

  constructor(cap: Dom0Capability, images: ImageStore, backend: Dom0VmBackend, limits: { memoryMiB: number; maxVms: number }) {
    this.#cap = cap;
    this.#images = images;
    this.#backend = backend;
    this.#limits = limits;
  }

  /** Memory promised to live VMs, and how many there are. */
  usage(): { memoryMiB: number; vms: number } {
    let memoryMiB = 0;
    let vms = 0;
    for (const r of this.#records.values()) {
      if (r.state !== 'creating' && r.state !== 'running') continue;
      if (r.state === 'running' && this.#domainState(r) === 'destroyed') continue;
      memoryMiB += r.memoryMiB;
      vms++;
    }
    return { memoryMiB, vms };
  }

  async create(request: VmCreate): Promise<VmView> {
    if (this.#records.has(request.vmId)) throw new TrustlaunchError('CONFLICT', `a VM ${request.vmId} exists on this node`);
    if (request.authorizedKey === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', `authorizedKey: the ${this.#backend.kind} VM backend needs the user's login key`);
    const memoryMiB = request.memoryMiB ?? DEFAULT_MEMORY_MIB;
    const used = this.usage();
    if (used.vms >= this.#limits.maxVms) throw new TrustlaunchError('CAPACITY_EXCEEDED', `this node runs at most ${this.#limits.maxVms} VMs`);
    if (used.memoryMiB + memoryMiB > this.#limits.memoryMiB) {
      throw new TrustlaunchError('CAPACITY_EXCEEDED', `${memoryMiB} MiB asked, ${this.#limits.memoryMiB - used.memoryMiB} MiB of ${this.#limits.memoryMiB} free`);
    }
    const memoryBytes = memoryMiB * 1024 * 1024;
    this.#backend.admit(memoryBytes);
    // Reserved before the first await: a concurrent create of the same id is a CONFLICT.
    const record: Record_ = {
      vmId: request.vmId,
      image: request.image,
      hostname: request.hostname,
      memoryMiB,
      createdAt: new Date().toISOString(),
      domainId: undefined,
      state: 'creating',
      error: undefined,
      last: undefined,
    };
    this.#records.set(request.vmId, record);
    try {
      const digest = await this.#imageDigest(request);
      record.image = digest;
      const image = await this.#image(digest);
      const built = await this.#cap.buildVm({
        name: request.vmId,
        image,
        memoryBytes,
        guest: { hostname: request.hostname, authorizedKeys: [request.authorizedKey] },
        launch: { nonce: request.nonce, hostname: request.hostname, authorizedKey: request.authorizedKey },
      });
      record.domainId = built.vmId;
      await this.#cap.startVm(built.vmId);
      record.state = 'running';
    } catch (e) {
      if (record.domainId !== undefined) await this.#cap.destroyVm(record.domainId).catch(() => undefined);
      this.#records.delete(request.vmId);
      throw e;
    }
    return this.view(request.vmId);
  }

  view(vmId: string): VmView {
    return this.#view(this.#record(vmId));
  }

  list(): VmView[] {
    return [...this.#records.values()].filter((r) => r.state !== 'creating').map((r) => this.#view(r));
  }

  async stop(vmId: string): Promise<VmView> {
    const r = this.#record(vmId);
    if (r.state === 'running' && r.domainId !== undefined) {
      r.last = this.#info(r);
      await this.#cap.destroyVm(r.domainId);
      r.state = 'stopped';
    }
    return this.#view(r);
  }

  async delete(vmId: string): Promise<void> {
    const r = this.#record(vmId);
    if (r.state === 'running' && r.domainId !== undefined) await this.#cap.destroyVm(r.domainId).catch((e: unknown) => {
      if (!isTrustlaunchError(e, 'NOT_FOUND')) throw e;
    });
    this.#records.delete(vmId);
  }

  async #imageDigest(request: VmCreate): Promise<Digest> {
    if (request.imageData !== undefined) return this.#images.putBytes(fromBase64url(request.imageData));
    if (request.image === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'give exactly one of image (a digest) and imageData');
    return request.image;
  }

  /**
   * The image to hand over: a bundle when the blob is a bundle manifest (its parts read by
   * digest; NOT_FOUND when one is missing), else the blob itself.
   */
  async #image(digest: Digest): Promise<ArrayBuffer | VmImageBundle> {
    const size = await this.#images.size(digest);
    if (size !== undefined && size <= MAX_MANIFEST_BYTES) {
      const bytes = new Uint8Array(await this.#images.read(digest));
      let manifest;
      try {
        manifest = parseManifest(bytes);
      } catch {
        return bytes.buffer; // a small raw image
      }
      return {
        kernel: await this.#images.read(manifest.kernel),
        ...(manifest.initrd === undefined ? {} : { initrd: await this.#images.read(manifest.initrd) }),
        ...(manifest.cmdline === undefined ? {} : { cmdline: await this.#images.read(manifest.cmdline) }),
      };
    }
    return this.#images.read(digest);
  }

  #record(vmId: string): Record_ {
    const r = this.#records.get(vmId);
    if (r === undefined || r.state === 'creating') throw new TrustlaunchError('NOT_FOUND', `no VM ${vmId} on this node`);
    return r;
  }

  #info(r: Record_): VmInfo | undefined {
    if (r.domainId === undefined) return r.last;
    try {
      return this.#cap.vm(r.domainId);
    } catch {
      return r.last;
    }
  }

  #domainState(r: Record_): string | undefined {
    return this.#info(r)?.state;
  }

  #view(r: Record_): VmView {
    const info = this.#info(r);
    if (info !== undefined) r.last = info;
    const destroyed = info?.state === 'destroyed';
    const state = r.state === 'stopped' ? 'stopped' : r.state === 'failed' ? 'failed' : destroyed ? 'crashed' : info?.sshPort === null ? 'booting' : 'running';
    const endpoint = r.domainId === undefined || r.state !== 'running' || destroyed ? undefined : this.#backend.endpoint(r.domainId);
    return {
      vmId: r.vmId,
      state,
      attestation: attestationView(info),
      ...(endpoint === undefined ? {} : { ssh: { host: endpoint.host, port: endpoint.sshPort } }),
      ...(info === undefined ? {} : { kernel: info.kernelDigest }),
      ...(info?.measurements.initrd === undefined ? {} : { initrd: info.measurements.initrd }),
      ...(info?.measurements.cmdline === undefined ? {} : { cmdline: info.measurements.cmdline }),
      image: r.image as Digest,
      hostname: r.hostname,
      memoryMiB: r.memoryMiB,
      createdAt: r.createdAt,
    };
  }
}

function attestationView(info: VmInfo | undefined): VmView['attestation'] {
  const a = info?.attestation;
  if (a === undefined) return { state: 'booting' };
  if (a.state === 'unattested') return { state: 'refused', code: 'UNSUPPORTED', message: 'attestation is turned off on this node (a benchmark/development switch)' };
  return a.reason === null ? { state: a.state } : { state: a.state, code: a.reason };
}
