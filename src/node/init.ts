// `trustlaunch node init`: a new node directory (src/node/config.ts). Manufactures the
// auth device, writes the mini-domain image (this installation's agent code) and the boot
// configuration that freezes its digest as the launch policy, dom0's TLS identity and the
// manager's token, the node config, and the boot measurements a CA needs as platform
// reference values. Nothing is replaced without `force`.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { writeFileAtomic, writeSecretFile } from '../crypto/files.js';
import { exportPrivateKeyPem, generateKeyPair } from '../crypto/keys.js';
import { issueTlsServerCertificate } from '../crypto/tls.js';
import { createSelfSignedCa, parseCertificate } from '../crypto/x509.js';
import { generateToken, hashToken } from '../http/auth.js';
import { canonicalize } from '../protocol/canonical-json.js';
import { sha256Digest } from '../protocol/digest.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { FIRMWARE, hypervisorMeasurement, type NodeMeasurements } from './boot-chain.js';
import { manufactureDevice } from './auth-device.js';
import { parseNodeConfig, nodePaths, type NodeConfig, type NodeDeviceKind, type NodePaths, type VmBackendKind } from './config.js';
import { bootConfigBytes, parseBootConfig, type BootConfig } from './hypervisor/index.js';
import { installedImage } from './minidomain/image.js';

export interface InitNodeOptions {
  readonly dir: string;
  readonly nodeId?: string;
  readonly device?: NodeDeviceKind;
  readonly tpmPath?: string;
  readonly memoryMiB?: number;
  readonly maxVms?: number;
  readonly caUrl?: string;
  /** PEM file of the CA certificate to trust for the first registration (copied to ca-bootstrap.pem). */
  readonly caCertificateFile?: string;
  readonly listen?: { readonly host: string; readonly port: number };
  readonly attestation?: 'on' | 'off';
  /** `process` (default) or `qemu`. */
  readonly vmBackend?: VmBackendKind;
  readonly force?: boolean;
}

export interface InitializedNode {
  readonly paths: NodePaths;
  readonly config: NodeConfig;
  readonly measurements: NodeMeasurements;
  /** PEM files a CA must trust as endorsement roots for this node's EK certificates. */
  readonly endorsementRoots: readonly string[];
}

/** The measurements of a node directory as `node serve` will boot it. */
export async function measureNode(paths: NodePaths): Promise<NodeMeasurements> {
  const bootConfig = parseBootConfig(JSON.parse(await readFile(paths.bootConfig, 'utf8')));
  const image = await readFile(paths.miniDomainImage);
  return {
    firmware: FIRMWARE.digest,
    hypervisor: hypervisorMeasurement().digest,
    bootConfig: sha256Digest(bootConfigBytes(bootConfig)),
    minidomain: sha256Digest(image),
  };
}

export async function initNode(o: InitNodeOptions): Promise<InitializedNode> {
  const paths = nodePaths(o.dir);
  if (existsSync(paths.config) && o.force !== true) throw new TrustlaunchError('CONFLICT', `${paths.config} exists; pass --force to re-initialise the node`);
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const nodeId = o.nodeId ?? `node-${randomBytes(3).toString('hex')}`;
  const kind = o.device ?? 'sim';

  const manufactured = await manufactureDevice(kind, paths.device, o.force === true);

  // The mini-domain image and the boot configuration whose launch policy freezes its digest.
  const image = installedImage();
  await writeFileAtomic(paths.miniDomainImage, image, 0o644);
  const bootConfig: BootConfig = parseBootConfig({ v: 1, nodeId, launchPolicy: { miniDomainDigest: sha256Digest(image) } });
  await writeFileAtomic(paths.bootConfig, `${canonicalize(bootConfig)}\n`, 0o644);

  // dom0's HTTPS identity: a node-local CA the manager pins, and a server certificate.
  await mkdir(`${o.dir}/tls`, { recursive: true, mode: 0o700 });
  const listen = o.listen ?? { host: '127.0.0.1', port: 9443 };
  const caKey = generateKeyPair('ecdsa-p256').privateKey;
  const tlsCa = await createSelfSignedCa({ commonName: `trustlaunch node ${nodeId} dom0 CA`, privateKey: caKey });
  const server = await issueTlsServerCertificate({ issuer: { certificate: tlsCa, privateKey: caKey }, commonName: `${nodeId} dom0`, names: [listen.host] });
  await writeFileAtomic(paths.tlsCa, tlsCa.pem, 0o644);
  await writeSecretFile(paths.tlsCaKey, exportPrivateKeyPem(caKey));
  await writeFileAtomic(paths.tlsCert, server.chain.map((c) => c.pem).join(''), 0o644);
  await writeSecretFile(paths.tlsKey, exportPrivateKeyPem(server.privateKey));

  const token = generateToken('node');
  await writeSecretFile(paths.dom0Token, `${token}\n`);

  if (o.caCertificateFile !== undefined) {
    parseCertificate(await readFile(o.caCertificateFile, 'utf8'));
    await copyFile(o.caCertificateFile, paths.caBootstrap);
  }

  const config = parseNodeConfig({
    v: 1,
    nodeId,
    device: kind === 'tpm' ? { kind, path: o.tpmPath ?? '/dev/tpmrm0' } : { kind },
    memoryMiB: o.memoryMiB ?? 4096,
    maxVms: o.maxVms ?? 64,
    ca: { url: o.caUrl ?? 'https://127.0.0.1:8443' },
    dom0: { listen, tokenHash: hashToken(token) },
    vm: { backend: o.vmBackend ?? 'process', maxImageMiB: 512 },
    attestation: o.attestation ?? 'on',
  });
  await writeSecretFile(paths.config, `${JSON.stringify(config, null, 2)}\n`);

  const measurements = await measureNode(paths);
  await writeFile(paths.measurements, `${JSON.stringify(measurements, null, 2)}\n`, { mode: 0o644 });
  return { paths, config, measurements, endorsementRoots: manufactured.endorsementRoots };
}
