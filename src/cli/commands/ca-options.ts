// Shared pieces of the `trustlaunch ca …` commands: argument parsers, and where the admin
// commands find a running CA and the admin credential. Secrets never go on the command
// line (ps and /proc show it to every local user): the admin token comes from a 0600 file
// or the environment.
//
// Order, first found wins:
//   CA URL:       --url URL,        TRUSTLAUNCH_CA_URL,    ca.json's listen address (with --dir)
//   admin token:  --token-file F,   TRUSTLAUNCH_CA_TOKEN,  DIR/admin.token
//   CA root PEM:  --ca-cert F,      TRUSTLAUNCH_CA_CERT,   DIR/root-ca.pem
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { readSecretFile } from '../../crypto/files.js';
import { parseCertificate } from '../../crypto/x509.js';
import { CaAdminClient } from '../../ca/client.js';
import { CA_FILES, readCaConfig, urlForListen } from '../../ca/config.js';
import { readAdminToken } from '../../ca/directory.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { isDigest, type Digest } from '../../protocol/digest.js';

export interface AdminFlags {
  readonly dir?: string;
  readonly url?: string;
  readonly tokenFile?: string;
  readonly caCert?: string;
}

/** Adds the connection options every admin command takes. */
export function withAdminOptions(cmd: Command): Command {
  return cmd
    .option('--dir <dir>', 'the CA directory: its address, root certificate and admin token (env TRUSTLAUNCH_CA_DIR)')
    .option('--url <url>', 'the CA URL (env TRUSTLAUNCH_CA_URL)')
    .option('--token-file <file>', 'file holding the admin token, mode 0600 (env TRUSTLAUNCH_CA_TOKEN holds the token itself)')
    .option('--ca-cert <file>', 'PEM of the CA root certificate to pin (env TRUSTLAUNCH_CA_CERT)')
    .option('--json', 'print JSON');
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v.trim() === '' ? undefined : v.trim());

/** An admin client for the CA the flags and environment name; close it when done. */
export async function adminClient(flags: AdminFlags, env: NodeJS.ProcessEnv = process.env): Promise<CaAdminClient> {
  const dir = flags.dir ?? nonEmpty(env['TRUSTLAUNCH_CA_DIR']);
  const config = dir === undefined ? undefined : await readCaConfig(join(dir, CA_FILES.config));
  const url = flags.url ?? nonEmpty(env['TRUSTLAUNCH_CA_URL']) ?? (config === undefined ? undefined : urlForListen(config.listen));
  if (url === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'no CA: pass --dir DIR (the CA directory) or --url URL (or set TRUSTLAUNCH_CA_DIR / TRUSTLAUNCH_CA_URL)');
  const token =
    (flags.tokenFile === undefined ? undefined : (await readSecretFile(flags.tokenFile, { maxBytes: 1024 })).toString('utf8').trim()) ??
    nonEmpty(env['TRUSTLAUNCH_CA_TOKEN']) ??
    (dir === undefined || config === undefined ? undefined : await readAdminToken(dir, config.paths.adminToken));
  if (token === undefined) throw new TrustlaunchError('UNAUTHENTICATED', 'no admin token: pass --token-file FILE or --dir DIR, or set TRUSTLAUNCH_CA_TOKEN');
  const certFile = flags.caCert ?? nonEmpty(env['TRUSTLAUNCH_CA_CERT']) ?? (dir === undefined || config === undefined ? undefined : join(dir, config.paths.rootCertificate));
  if (certFile === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', "no CA root certificate to pin: pass --ca-cert FILE or --dir DIR");
  return new CaAdminClient({ url, root: parseCertificate(await readFile(certFile, 'utf8')), token, timeoutMs: 15_000 });
}

/** Runs `fn` with an admin client and closes it. */
export async function withAdmin<T>(flags: AdminFlags, fn: (admin: CaAdminClient) => Promise<T>): Promise<T> {
  const admin = await adminClient(flags);
  try {
    return await fn(admin);
  } finally {
    await admin.close();
  }
}

const UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** `90`, `90s`, `15m`, `2h`, `30d`, `1w` → seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,9})([smhdw]?)$/.exec(text.trim());
  if (m === null) throw new InvalidArgumentError('expected a duration such as 3600, 90s, 15m, 2h, 30d or 1w');
  return Number(m[1]) * (UNITS[m[2] === '' ? 's' : (m[2] as string)] as number);
}

/** A point in time: an ISO 8601 date/time, or a duration from now (`30d`). Returns ISO 8601. */
export function parseWhen(text: string, now = Date.now()): string {
  if (/^\d{1,9}[smhdw]?$/.test(text.trim())) return new Date(now + parseDuration(text) * 1000).toISOString();
  const t = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(t)) throw new InvalidArgumentError('expected an ISO 8601 date (2027-01-31, 2027-01-31T12:00:00Z) or a duration from now (30d)');
  return new Date(t).toISOString();
}

export function parseDigestArg(text: string): Digest {
  if (!isDigest(text)) throw new InvalidArgumentError('expected sha256:<64 lowercase hex>');
  return text;
}

export function parseInteger(min: number, max: number): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer ${min}..${max}`);
    return n;
  };
}

/** Collects a repeatable option. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
