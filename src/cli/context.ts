// Where the CLI finds a service and its credentials, in one place for every command that
// talks to the manager (the client engineer extends this with ~/.config/trustlaunch/).
//
// Order, first found wins:
//   manager URL:  --manager URL,  TRUSTLAUNCH_MANAGER_URL,  DIR/endpoint (with --dir DIR)
//   token:        --token-file F, TRUSTLAUNCH_TOKEN,        DIR/admin.token
//   TLS CA (PEM): --ca-cert F,    TRUSTLAUNCH_MANAGER_CA,   DIR/tls/ca.pem
// There is no --token flag: a secret on the command line is visible to every local user
// (ps, /proc). Token files must be mode 0600 (readSecretFile).
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { readSecretFile } from '../crypto/files.js';
import { JsonClient } from '../http/client.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { managerPaths } from '../manager/config.js';

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

export async function resolveManagerConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Promise<ServiceConnection> {
  const paths = flags.dir === undefined ? undefined : managerPaths(flags.dir);
  const url = flags.manager ?? nonEmpty(env['TRUSTLAUNCH_MANAGER_URL']) ?? (paths === undefined ? undefined : await readOptional(paths.endpoint));
  if (url === undefined) {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'no manager URL: pass --manager URL, set TRUSTLAUNCH_MANAGER_URL, or --dir DIR of a running manager');
  }
  const token =
    (flags.tokenFile === undefined ? undefined : await readToken(flags.tokenFile)) ??
    nonEmpty(env['TRUSTLAUNCH_TOKEN']) ??
    (paths === undefined ? undefined : await readToken(paths.adminToken));
  if (token === undefined) throw new TrustlaunchError('UNAUTHENTICATED', 'no API token: pass --token-file FILE, set TRUSTLAUNCH_TOKEN, or --dir DIR');
  const caFile = flags.caCert ?? nonEmpty(env['TRUSTLAUNCH_MANAGER_CA']) ?? paths?.tlsCa;
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
