// Pinning the CA (docs/client.md "Pinning the CA"): the one thing a user trusts besides
// themselves. `trustCa` fetches the CA's identity document (`GET /v1/keys`), checks that it
// has the fingerprint the user was given (or is byte-for-byte the identity file they were
// handed), and stores it in CONFIG/ca.json. The first fetch does not verify TLS — nothing
// else could be pinned yet — which is safe because the document is accepted only with the
// right fingerprint (src/ca/identity.ts: SHA-256 of its canonical JSON). A second fetch,
// TLS-pinned to the document's own root certificate, proves that the server at URL holds
// that CA's TLS key. Every later connection to the CA is pinned the same way.
import { readFile } from 'node:fs/promises';
import { Agent } from 'undici';
import { z } from 'zod';
import { CaIdentitySchema, parseIdentity, type PinnedCa } from '../ca/identity.js';
import { writeFileAtomic } from '../crypto/files.js';
import { pinnedCaAgent } from '../crypto/tls.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { DigestSchema, describeIssues } from '../protocol/messages.js';
import { requestJson } from './http.js';
import { ensureClientDir, type ClientPaths } from './paths.js';

/** An identity document is a few KiB (a JWK or two, an SSH key, one certificate). */
const MAX_IDENTITY_BYTES = 64 * 1024;
const FETCH_TIMEOUT_MS = 15_000;

const PinnedCaFileSchema = z.strictObject({
  v: z.literal(1),
  url: z.string().max(512),
  fingerprint: DigestSchema,
  pinnedAt: z.string().max(64),
  identity: CaIdentitySchema,
});
type PinnedCaFile = z.infer<typeof PinnedCaFileSchema>;

/** The pinned CA: its identity, ready to verify with, and where it answers. */
export interface TrustedCa extends PinnedCa {
  readonly url: string;
  readonly pinnedAt: string;
}

/** `https://host[:port]` with nothing after it; anything else is a usage error. */
export function parseCaUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', `not a URL: ${JSON.stringify(text.slice(0, 100))}`);
  }
  if (url.protocol !== 'https:') throw new TrustlaunchError('MALFORMED_REQUEST', 'the CA URL must be https://');
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'the CA URL is https://HOST[:PORT] (no path, query or credentials)');
  }
  return url.origin;
}

/** Reads CONFIG/ca.json; CA_NOT_PINNED when there is none. The fingerprint is checked again on every load. */
export async function loadPinnedCa(paths: ClientPaths): Promise<TrustedCa> {
  let text: string;
  try {
    text = await readFile(paths.pinnedCa, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new TrustlaunchError('CA_NOT_PINNED', `no CA is pinned in ${paths.dir}: run \`trustlaunch ca trust URL --fingerprint sha256:…\` first`);
    }
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new TrustlaunchError('CA_NOT_PINNED', `${paths.pinnedCa} is not JSON: pin the CA again with \`trustlaunch ca trust\``);
  }
  const parsed = PinnedCaFileSchema.safeParse(json);
  if (!parsed.success) throw new TrustlaunchError('CA_NOT_PINNED', `${paths.pinnedCa} is not a pinned CA (${describeIssues(parsed.error)}): pin the CA again with \`trustlaunch ca trust\``);
  return trusted(parsed.data);
}

function trusted(file: PinnedCaFile): TrustedCa {
  return { ...parseIdentity(file.identity, file.fingerprint), url: parseCaUrl(file.url), pinnedAt: file.pinnedAt };
}

export interface TrustCaOptions {
  readonly paths: ClientPaths;
  readonly url: string;
  /** The fingerprint the CA operator published (`sha256:<hex>`). */
  readonly fingerprint?: string;
  /** The CA's identity.json, handed over out of band. */
  readonly identityFile?: string;
  /** Replace a pin of another CA (otherwise CONFLICT). */
  readonly replace?: boolean;
}

export interface TrustCaResult {
  readonly ca: TrustedCa;
  /** The same CA (and URL) was pinned already: nothing changed. */
  readonly unchanged: boolean;
  /** The fingerprint of the CA this pin replaced. */
  readonly replaced: string | undefined;
}

export async function trustCa(o: TrustCaOptions): Promise<TrustCaResult> {
  const url = parseCaUrl(o.url);
  if (o.fingerprint === undefined && o.identityFile === undefined) {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'pinning needs the CA fingerprint (--fingerprint sha256:…) or its identity file (--ca-key FILE)');
  }
  if (o.fingerprint !== undefined && !DigestSchema.safeParse(o.fingerprint).success) {
    throw new TrustlaunchError('MALFORMED_DIGEST', 'a CA fingerprint is sha256:<64 lowercase hex> (as `trustlaunch ca init` prints it)');
  }
  // What the user brought: a fingerprint, an identity document, or both (which must agree).
  const fromFile = o.identityFile === undefined ? undefined : parseIdentity(await readJsonFile(o.identityFile), o.fingerprint);
  const expected = fromFile?.fingerprint ?? (o.fingerprint as string);

  // 1. the document, over TLS we cannot check yet; accepted only with the expected fingerprint
  const unverified = new Agent({ connect: { rejectUnauthorized: false } });
  let served: PinnedCa;
  try {
    served = parseIdentity(await fetchKeys(url, unverified), expected);
  } finally {
    await unverified.close();
  }
  // 2. the same document again, over TLS pinned to its root: the server holds the CA's TLS key
  const pinned = pinnedCaAgent({ ca: served.tlsRoot });
  try {
    parseIdentity(await fetchKeys(url, pinned), expected);
  } finally {
    await pinned.close();
  }

  const previous = await loadPinnedCa(o.paths).catch((e: unknown) => {
    if (e instanceof TrustlaunchError && e.code === 'CA_NOT_PINNED') return undefined;
    throw e;
  });
  if (previous !== undefined && previous.fingerprint === served.fingerprint && previous.url === url) return { ca: previous, unchanged: true, replaced: undefined };
  if (previous !== undefined && previous.fingerprint !== served.fingerprint && o.replace !== true) {
    throw new TrustlaunchError('CONFLICT', `another CA (${previous.fingerprint}) is pinned in ${o.paths.dir}; pass --replace to pin ${served.fingerprint} instead`);
  }
  const file: PinnedCaFile = { v: 1, url, fingerprint: served.fingerprint, pinnedAt: new Date().toISOString(), identity: served.document };
  await ensureClientDir(o.paths);
  await writeFileAtomic(o.paths.pinnedCa, `${JSON.stringify(file, null, 2)}\n`, 0o644);
  return { ca: trusted(file), unchanged: false, replaced: previous?.fingerprint === served.fingerprint ? undefined : previous?.fingerprint };
}

async function fetchKeys(origin: string, dispatcher: Agent): Promise<unknown> {
  return requestJson({
    dispatcher,
    url: new URL('/v1/keys', origin),
    timeoutMs: FETCH_TIMEOUT_MS,
    maxBytes: MAX_IDENTITY_BYTES,
    unreachableCode: 'CA_UNREACHABLE',
    service: 'the CA',
  });
}

async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new TrustlaunchError('MALFORMED_REQUEST', `cannot read ${path}: ${(e as Error).message}`);
  }
  if (text.length > MAX_IDENTITY_BYTES) throw new TrustlaunchError('MALFORMED_REQUEST', `${path} is larger than an identity document`);
  try {
    return JSON.parse(text);
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', `${path} is not JSON (expected the CA's identity.json)`);
  }
}

/** Reads an identity document file (the CA's identity.json), checked to parse; for offline verification. */
export async function readIdentityFile(path: string, fingerprint?: string): Promise<PinnedCa> {
  return parseIdentity(await readJsonFile(path), fingerprint);
}
