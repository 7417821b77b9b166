// Manufacturing a node's swtpm: `swtpm_setup --tpm2 --create-ek-cert` with a configuration
// that lives in the node's own directory, so the local CA that signs the EK certificates
// (swtpm_localca) keeps its keys, serial and lock there too; nothing is written under
// /var/lib or /etc. swtpm_setup creates an RSA-2048 EK (persistent 0x81010001, certificate
// in NV 0x01c00002) and an ECC P-384 EK (0x81010016, NV 0x01c00016), and activates only
// the SHA-256 PCR bank.
import { execFile } from 'node:child_process';
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TrustlaunchError } from '../../protocol/errors.js';

const run = promisify(execFile);

export interface SwtpmLayout {
  /** The node directory everything lives in. */
  readonly nodeDir: string;
  /** swtpm's state (tpm2-00.permall). */
  readonly stateDir: string;
  /** The local CA's keys, certificates and serial. */
  readonly caDir: string;
  /** `<nodeDir>/swtpm_setup.conf`. */
  readonly setupConfig: string;
  /** The local CA's self-signed root (an endorsement root a CA may trust for this node). */
  readonly rootCertificate: string;
  /** The intermediate that signs EK certificates. */
  readonly issuerCertificate: string;
}

export function swtpmLayout(nodeDir: string): SwtpmLayout {
  const caDir = join(nodeDir, 'swtpm-localca');
  return {
    nodeDir,
    stateDir: join(nodeDir, 'swtpm-state'),
    caDir,
    setupConfig: join(nodeDir, 'swtpm_setup.conf'),
    rootCertificate: join(caDir, 'swtpm-localca-rootca-cert.pem'),
    issuerCertificate: join(caDir, 'issuercert.pem'),
  };
}

export interface ManufactureOptions {
  /** Written into the EK certificates' platform fields (swtpm_localca options). */
  readonly platformManufacturer?: string;
  readonly platformModel?: string;
  readonly platformVersion?: string;
  /** Bound on swtpm_setup (default 60 s; it takes ~1.5 s). */
  readonly timeoutMs?: number;
}

/** True when the node's swtpm state exists (it was manufactured). */
export async function isManufactured(layout: SwtpmLayout): Promise<boolean> {
  return access(join(layout.stateDir, 'tpm2-00.permall')).then(
    () => true,
    () => false,
  );
}

const SAFE_VALUE = /^[A-Za-z0-9 ._-]{1,64}$/;

/** Writes the node-local configuration files (mode 0600) that point swtpm_setup and swtpm_localca at the node's directory. */
async function writeConfiguration(layout: SwtpmLayout, o: ManufactureOptions): Promise<void> {
  const platform = { manufacturer: o.platformManufacturer ?? 'trustlaunch', model: o.platformModel ?? 'trustlaunch-node', version: o.platformVersion ?? '1.0' };
  for (const v of Object.values(platform)) if (!SAFE_VALUE.test(v)) throw new TypeError(`platform field ${JSON.stringify(v)} must match ${SAFE_VALUE.source}`);
  for (const p of [layout.nodeDir, layout.caDir, layout.stateDir]) {
    if (/[\n=]/.test(p)) throw new TypeError(`path ${JSON.stringify(p)} cannot go into a swtpm configuration file`);
  }
  await mkdir(layout.caDir, { recursive: true, mode: 0o700 });
  await mkdir(layout.stateDir, { recursive: true, mode: 0o700 });
  const localcaConf = join(layout.caDir, 'swtpm-localca.conf');
  const localcaOptions = join(layout.caDir, 'swtpm-localca.options');
  await writeFile(
    localcaConf,
    [`statedir = ${layout.caDir}`, `signingkey = ${join(layout.caDir, 'signkey.pem')}`, `issuercert = ${layout.issuerCertificate}`, `certserial = ${join(layout.caDir, 'certserial')}`, ''].join('\n'),
    { mode: 0o600 },
  );
  await writeFile(localcaOptions, [`--platform-manufacturer ${platform.manufacturer}`, `--platform-version ${platform.version}`, `--platform-model ${platform.model}`, ''].join('\n'), { mode: 0o600 });
  await writeFile(
    layout.setupConfig,
    ['create_certs_tool = /usr/bin/swtpm_localca', `create_certs_tool_config = ${localcaConf}`, `create_certs_tool_options = ${localcaOptions}`, 'active_pcr_banks = sha256', ''].join('\n'),
    { mode: 0o600 },
  );
}

/**
 * Manufactures the node's TPM: the configuration, then swtpm_setup creating the EKs, their
 * certificates (signed by the node-local CA, created on first use) and the SHA-256 bank.
 * Refuses to overwrite an existing state (a node's EKs are its identity).
 */
export async function manufactureSwtpm(layout: SwtpmLayout, options: ManufactureOptions = {}): Promise<void> {
  if (await isManufactured(layout)) throw new TrustlaunchError('CONFLICT', `${layout.stateDir} already holds a manufactured TPM`);
  await writeConfiguration(layout, options);
  const args = ['--tpm2', '--config', layout.setupConfig, '--tpmstate', layout.stateDir, '--create-ek-cert', '--pcr-banks', 'sha256', '--not-overwrite'];
  try {
    // HOME and XDG_CONFIG_HOME point into the node directory so no default configuration is read or written elsewhere.
    await run('swtpm_setup', args, { timeout: options.timeoutMs ?? 60_000, env: { ...process.env, HOME: layout.nodeDir, XDG_CONFIG_HOME: layout.nodeDir } });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new TrustlaunchError('UNAVAILABLE', 'swtpm_setup is not installed (Debian: apt-get install swtpm swtpm-tools)', { cause: e });
    const stderr = typeof e === 'object' && e !== null && 'stderr' in e ? String(e.stderr) : '';
    const stdout = typeof e === 'object' && e !== null && 'stdout' in e ? String(e.stdout) : '';
    throw new TrustlaunchError('UNAVAILABLE', `swtpm_setup failed: ${(stderr || stdout).trim().slice(-600)}`, { cause: e });
  }
  if (!(await isManufactured(layout))) throw new TrustlaunchError('UNAVAILABLE', 'swtpm_setup finished without writing the TPM state');
  // swtpm_localca creates its private keys 0640; the node's secrets are 0600.
  for (const key of ['signkey.pem', 'swtpm-localca-rootca-privkey.pem']) await chmod(join(layout.caDir, key), 0o600).catch(() => undefined);
}

/** The node-local CA's root and issuer certificates (PEM), for a CA's endorsement roots. */
export async function localCaCertificates(layout: SwtpmLayout): Promise<{ root: string; issuer: string }> {
  return { root: await readFile(layout.rootCertificate, 'utf8'), issuer: await readFile(layout.issuerCertificate, 'utf8') };
}
