// Where the CLI finds a service and its credentials, in one place for every command that
// talks to the manager, and the user's config directory (src/client/paths.ts).
//
// Order, first found wins:
//   manager URL:  --manager URL,  TRUSTLAUNCH_MANAGER_URL,  CONFIG/config.json manager.url,        DIR/endpoint (with --dir DIR)
//   token:        --token-file F, TRUSTLAUNCH_TOKEN,        CONFIG/config.json manager.tokenFile,  DIR/admin.token
//   TLS CA (PEM): --ca-cert F,    TRUSTLAUNCH_MANAGER_CA,   CONFIG/config.json manager.caCertFile, DIR/tls/ca.pem
//   config dir:   --config-dir D, TRUSTLAUNCH_CONFIG_DIR,   $XDG_CONFIG_HOME/trustlaunch, ~/.config/trustlaunch
// There is no --token flag: a secret on the command line is visible to every local user
// (ps, /proc). Token files must be mode 0600 (readSecretFile).
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { readSecretFile } from '../crypto/files.js';
import { JsonClient } from '../http/client.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { managerPaths } from '../manager/config.js';
import { TrustlaunchClient } from '../client/client.js';
import { clientPaths, configDir, type ClientPaths } from '../client/paths.js';
import { loadPinnedCa } from '../client/pinned-ca.js';
import { readSettings, type ClientSettings } from '../client/settings.js';

export interface ConnectionFlags {
  readonly manager?: string;
  readonly tokenFile?: string;
  readonly caCert?: string;
  readonly dir?: string;
}

export interface ServiceConnection {
  readonly url: string;
  readonly token: string;
  /** PEM; undefined: the system's roots. */
  readonly ca: string | undefined;
}

/** Adds --manager, --token-file, --ca-cert and --dir to a command. */
export function withConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--manager <url>', 'manager URL (env TRUSTLAUNCH_MANAGER_URL)')
    .option('--token-file <file>', 'file holding the API token, mode 0600 (env TRUSTLAUNCH_TOKEN holds the token itself)')
    .option('--ca-cert <file>', "PEM of the CA the manager's TLS certificate chains to (env TRUSTLAUNCH_MANAGER_CA)")
    .option('--dir <dir>', 'a local manager directory: its endpoint, TLS CA and admin token');
}

export async function resolveManagerConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env, settings: ClientSettings['manager'] = {}): Promise<ServiceConnection> {
  const paths = flags.dir === undefined ? undefined : managerPaths(flags.dir);
  const url = flags.manager ?? nonEmpty(env['TRUSTLAUNCH_MANAGER_URL']) ?? settings.url ?? (paths === undefined ? undefined : await readOptional(paths.endpoint));
  if (url === undefined) {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'no manager URL: pass --manager URL, set TRUSTLAUNCH_MANAGER_URL, or --dir DIR of a running manager');
  }
  const tokenFile = flags.tokenFile ?? (nonEmpty(env['TRUSTLAUNCH_TOKEN']) === undefined ? settings.tokenFile : undefined);
  const token =
    (tokenFile === undefined ? undefined : await readToken(tokenFile)) ??
    nonEmpty(env['TRUSTLAUNCH_TOKEN']) ??
    (paths === undefined ? undefined : await readToken(paths.adminToken));
  if (token === undefined) throw new TrustlaunchError('UNAUTHENTICATED', 'no API token: pass --token-file FILE, set TRUSTLAUNCH_TOKEN, or --dir DIR');
  const caFile = flags.caCert ?? nonEmpty(env['TRUSTLAUNCH_MANAGER_CA']) ?? settings.caCertFile ?? paths?.tlsCa;
  const ca = caFile === undefined ? undefined : await readFile(caFile, 'utf8');
  return { url: url.trim(), token, ca };
}

/** A JSON client for the manager; close it when done. */
export async function managerClient(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Promise<JsonClient> {
  const c = await resolveManagerConnection(flags, env);
  return new JsonClient({ baseUrl: c.url, token: c.token, ...(c.ca === undefined ? {} : { ca: c.ca }) });
}

/** Runs `fn` with a manager client and closes it afterwards. */
export async function withManager<T>(flags: ConnectionFlags, fn: (client: JsonClient) => Promise<T>): Promise<T> {
  const client = await managerClient(flags);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

// --- the user's commands: vm …, ca trust, verify ---------------------------------------

export interface UserFlags {
  readonly manager?: string;
  readonly tokenFile?: string;
  readonly caCert?: string;
  readonly configDir?: string;
  readonly sshKey?: string;
}

/** Adds --config-dir to a command. */
export function withConfigDirOption(cmd: Command): Command {
  return cmd.option('--config-dir <dir>', 'the client config directory (env TRUSTLAUNCH_CONFIG_DIR; default $XDG_CONFIG_HOME/trustlaunch or ~/.config/trustlaunch)');
}

/** Adds what every `vm` command takes: the manager connection (no --dir: that is an admin's) and --config-dir. */
export function withUserOptions(cmd: Command): Command {
  return withConfigDirOption(cmd)
    .option('--manager <url>', 'manager URL (env TRUSTLAUNCH_MANAGER_URL)')
    .option('--token-file <file>', 'file holding your API token, mode 0600 (env TRUSTLAUNCH_TOKEN holds the token itself)')
    .option('--ca-cert <file>', "PEM of the CA the manager's TLS certificate chains to (env TRUSTLAUNCH_MANAGER_CA)");
}

export function userPaths(flags: { readonly configDir?: string }, env: NodeJS.ProcessEnv = process.env): ClientPaths {
  return clientPaths(configDir(flags.configDir, env));
}

/** The client SDK for the user the flags, environment and config directory name; close it when done. */
export async function openUserClient(flags: UserFlags, env: NodeJS.ProcessEnv = process.env): Promise<TrustlaunchClient> {
  const paths = userPaths(flags, env);
  await loadPinnedCa(paths); // CA_NOT_PINNED comes first: nothing happens without a pinned CA
  const settings = await readSettings(paths);
  const connection = await resolveManagerConnection({ ...(flags.manager === undefined ? {} : { manager: flags.manager }), ...(flags.tokenFile === undefined ? {} : { tokenFile: flags.tokenFile }), ...(flags.caCert === undefined ? {} : { caCert: flags.caCert }) }, env, settings.manager);
  const sshKey = flags.sshKey ?? settings.sshKey;
  return TrustlaunchClient.open({ configDir: paths.dir, manager: connection, ...(sshKey === undefined ? {} : { sshKey }) });
}

/** Runs `fn` with a user client and closes it afterwards. */
export async function withUserClient<T>(flags: UserFlags, fn: (client: TrustlaunchClient) => Promise<T>): Promise<T> {
  const client = await openUserClient(flags);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

async function readToken(path: string): Promise<string> {
  const text = (await readSecretFile(path, { maxBytes: 4096 })).toString('utf8').trim();
  if (text === '') throw new TrustlaunchError('UNAUTHENTICATED', `${path} is empty`);
  return text;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return nonEmpty(await readFile(path, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new TrustlaunchError('UNAVAILABLE', `${path} does not exist: is the manager running (trustlaunch manager serve --dir …)?`);
    }
    throw e;
  }
}
