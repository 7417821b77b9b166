// A node's directory and its configuration file (docs/node.md).
//
//   DIR/node.json             this config (0600): dom0's, so untrusted as far as the TCB goes
//   DIR/boot-config.json      the boot configuration (measured into PCR 5: node id + launch policy)
//   DIR/minidomain.img        the mini-domain image dom0 hands to the launch gate at every boot
//   DIR/measurements.json     the boot measurements a CA needs (`trustlaunch ca platform add`)
//   DIR/dom0.token            the bearer token the manager presents to dom0 (0600; its hash is in node.json)
//   DIR/tls/ca.pem, ca-key.pem, server.pem, server-key.pem   dom0's HTTPS identity (keys 0600)
//   DIR/ca-bootstrap.pem      optional: the CA certificate trusted for the FIRST registration only
//   DIR/device/               the auth device's own storage (stands for the hardware: see docs/node.md)
//   DIR/images/               VM images by digest (sha256/<hex>), uploads in progress (tmp/)
//   DIR/runtime/              the VM backend's runtime directory (records, port reservations,
//                             per VM: a process guest's TMPDIR or a QEMU VM's measured copies)
//   DIR/endpoint              the URL dom0 listens on (written by `node serve`)
import { join } from 'node:path';
import { z } from 'zod';
import { readJsonFile } from '../fs/json-file.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { IdSchema, describeIssues } from '../protocol/messages.js';

export interface NodePaths {
  readonly dir: string;
  readonly config: string;
  readonly bootConfig: string;
  readonly miniDomainImage: string;
  readonly measurements: string;
  readonly dom0Token: string;
  readonly tlsCa: string;
  readonly tlsCaKey: string;
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly caBootstrap: string;
  readonly device: string;
  readonly images: string;
  readonly runtime: string;
  readonly endpoint: string;
}

export function nodePaths(dir: string): NodePaths {
  return {
    dir,
    config: join(dir, 'node.json'),
    bootConfig: join(dir, 'boot-config.json'),
    miniDomainImage: join(dir, 'minidomain.img'),
    measurements: join(dir, 'measurements.json'),
    dom0Token: join(dir, 'dom0.token'),
    tlsCa: join(dir, 'tls', 'ca.pem'),
    tlsCaKey: join(dir, 'tls', 'ca-key.pem'),
    tlsCert: join(dir, 'tls', 'server.pem'),
    tlsKey: join(dir, 'tls', 'server-key.pem'),
    caBootstrap: join(dir, 'ca-bootstrap.pem'),
    device: join(dir, 'device'),
    images: join(dir, 'images'),
    runtime: join(dir, 'runtime'),
    endpoint: join(dir, 'endpoint'),
  };
}

export const DEVICE_KINDS = ['sim', 'pci-nvstore', 'swtpm', 'tpm'] as const;
export type NodeDeviceKind = (typeof DEVICE_KINDS)[number];

export const VM_BACKENDS = ['process', 'qemu'] as const;
export type VmBackendKind = (typeof VM_BACKENDS)[number];

const MiB = z.number().int().min(64).max(16 * 1024 * 1024);

export const NodeConfigSchema = z.strictObject({
  v: z.literal(1),
  nodeId: IdSchema,
  device: z.strictObject({
    kind: z.enum(DEVICE_KINDS),
    /** `tpm` only: the character device (default /dev/tpmrm0). */
    path: z.string().regex(/^\/dev\/[a-z0-9]+$/).optional(),
  }),
  /** Memory this node offers to VMs. */
  memoryMiB: MiB,
  maxVms: z.number().int().min(1).max(1024),
  ca: z.strictObject({
    /** The CA's HTTPS base URL. */
    url: z.string().url().max(512),
  }),
  dom0: z.strictObject({
    listen: z.strictObject({ host: z.string().min(1).max(255), port: z.number().int().min(0).max(65535) }),
    /** SHA-256 of the manager's bearer token (`sha256:<hex>`; the token is in dom0.token). */
    tokenHash: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  }),
  vm: z.strictObject({
    /** `process` (guest programs, the default) or `qemu` (Linux guests: kernel + initramfs + command line bundles). */
    backend: z.enum(VM_BACKENDS),
    /** Largest VM image accepted (PUT /v1/images, inline images; each part of a bundle). */
    maxImageMiB: z.number().int().min(1).max(512),
    /** Loopback SSH ports for VMs (defaults: the backend's). */
    ports: z.strictObject({ from: z.number().int().min(1024).max(65535), to: z.number().int().min(1024).max(65535) }).optional(),
    /** QEMU backend settings (defaults: docs/qemu-vms.md). */
    qemu: z
      .strictObject({
        /** `auto`: KVM when the guest kernel really boots under it, else TCG. */
        accelerator: z.enum(['auto', 'kvm', 'tcg']).optional(),
        /** Charged per VM on top of its memory, for QEMU itself. */
        overheadMiB: z.number().int().min(0).max(4096).optional(),
        vcpus: z.number().int().min(1).max(64).optional(),
        /** How long a guest's config waits for its host certificate (0: configure at once; docs/qemu-vms.md). */
        certificateWaitMs: z.number().int().min(0).max(60_000).optional(),
      })
      .optional(),
  }),
  /** `off` is a benchmark/development switch: VMs are never attested (the manager sees them refused with UNSUPPORTED). */
  attestation: z.enum(['on', 'off']),
});
export type NodeConfig = z.infer<typeof NodeConfigSchema>;

export function parseNodeConfig(input: unknown): NodeConfig {
  const parsed = NodeConfigSchema.safeParse(input);
  if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `node config: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

export async function readNodeConfig(path: string): Promise<NodeConfig> {
  return parseNodeConfig(await readJsonFile(path, `no node config at ${path} (run \`trustlaunch node init\`)`));
}
