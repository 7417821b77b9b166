// `trustlaunch manager init`: a manager directory with its config, a TLS identity (a
// private CA that clients pin, and a server certificate it issued) and the bootstrap
// admin's token — written 0600 and returned once to be shown; only its hash is kept in
// the config.
import { mkdir } from 'node:fs/promises';
import { generateKeyPair, exportPrivateKeyPem } from '../crypto/keys.js';
import { writeFileAtomic, writeSecretFile } from '../crypto/files.js';
import { pathExists } from '../fs/exists.js';
import { createSelfSignedCa } from '../crypto/x509.js';
import { issueTlsServerCertificate } from '../crypto/tls.js';
import { generateToken, hashToken } from '../http/auth.js';
import { canonicalize } from '../protocol/canonical-json.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { ManagerConfigSchema, managerPaths, type ManagerConfig, type ManagerConfigInput, type ManagerPaths } from './config.js';

export interface InitOptions {
  readonly dir: string;
  readonly listenHost?: string;
  readonly listenPort?: number;
  readonly database?: string;
  /** Extra names (DNS or IP) for the server certificate, beyond localhost, 127.0.0.1 and ::1. */
  readonly tlsNames?: readonly string[];
  /** Any other config field (scheduler, intervals, …). */
  readonly settings?: Partial<Omit<ManagerConfigInput, 'version' | 'listen' | 'database' | 'adminTokenHash'>>;
}

export interface InitResult {
  readonly paths: ManagerPaths;
  readonly config: ManagerConfig;
  /** The bootstrap admin's token: show it once. */
  readonly adminToken: string;
  readonly caCertificate: string;
}

export const DEFAULT_MANAGER_PORT = 8444;

export async function initManager(opts: InitOptions): Promise<InitResult> {
  const paths = managerPaths(opts.dir);
  if (await pathExists(paths.config)) throw new TrustlaunchError('CONFLICT', `${paths.config} already exists; the manager in ${opts.dir} is initialised`);
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  await mkdir(`${opts.dir}/tls`, { recursive: true, mode: 0o700 });

  const adminToken = generateToken('adm');
  const config = ManagerConfigSchema.parse({
    ...opts.settings,
    version: 1,
    listen: { host: opts.listenHost ?? '127.0.0.1', port: opts.listenPort ?? DEFAULT_MANAGER_PORT },
    ...(opts.database === undefined ? {} : { database: opts.database }),
    adminTokenHash: hashToken(adminToken),
  });

  const caKey = generateKeyPair('ecdsa-p256').privateKey;
  const ca = await createSelfSignedCa({ commonName: 'trustlaunch manager TLS CA', privateKey: caKey });
  const server = await issueTlsServerCertificate({
    issuer: { certificate: ca, privateKey: caKey },
    commonName: 'trustlaunch manager',
    names: opts.tlsNames ?? [],
  });
  await writeSecretFile(paths.tlsCaKey, exportPrivateKeyPem(caKey));
  await writeFileAtomic(paths.tlsCa, ca.pem);
  await writeSecretFile(paths.tlsKey, exportPrivateKeyPem(server.privateKey));
  await writeFileAtomic(paths.tlsCert, server.chain.map((c) => c.pem).join(''));
  await writeSecretFile(paths.adminToken, `${adminToken}\n`);
  // Written last: its presence means the directory is complete.
  await writeSecretFile(paths.config, `${JSON.stringify(JSON.parse(canonicalize(config)), null, 2)}\n`);
  return { paths, config, adminToken, caCertificate: ca.pem };
}
