// The VM's SSH endpoint — where the manager says its sshd listens — and what is done with
// it. The address is untrusted: it is checked to be an IP address or a DNS name and a port
// before it goes on any command line (so it can never be read as an option), and it decides
// nothing: `ssh` accepts the server only with the host key or certificate the CA attested.
//
// `probeHostKey` is the client's `endpoint` check: the key the server at that address
// presents (ssh-keyscan) must be the attested one (HOST_KEY_MISMATCH otherwise). It catches
// a manager that points users at another server before anything is written; it is not what
// makes ssh safe — known_hosts is.
import { execFile } from 'node:child_process';
import { connect, isIP } from 'node:net';
import { parseSshPublicKey } from '../crypto/ssh-keys.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { HostnameSchema } from '../protocol/messages.js';

export interface SshEndpoint {
  readonly host: string;
  readonly port: number;
}

/** The endpoint, checked; MALFORMED_REQUEST when it is not an address and port. */
export function checkEndpoint(e: { host: string; port: number }): SshEndpoint {
  const hostOk = isIP(e.host) !== 0 || HostnameSchema.safeParse(e.host).success;
  if (!hostOk || !Number.isInteger(e.port) || e.port < 1 || e.port > 65535) {
    throw new TrustlaunchError('MALFORMED_REQUEST', `the manager reports an SSH endpoint that is not HOST:PORT: ${JSON.stringify(e).slice(0, 120)}`);
  }
  return { host: e.host, port: e.port };
}

/** Key types as ssh-keyscan names them; each one asked for costs the server a connection. */
export type ScanType = 'ed25519' | 'ecdsa';

/** The ssh-keyscan type of an OpenSSH key line. */
export function scanTypeOf(keyLine: string): ScanType {
  return keyLine.startsWith('ecdsa-') ? 'ecdsa' : 'ed25519';
}

/** The plain host keys (`type base64`) the server at `endpoint` presents now; [] when it does not answer. */
export function presentedHostKeys(endpoint: SshEndpoint, timeoutSeconds = 3, types: readonly ScanType[] = ['ed25519', 'ecdsa']): Promise<string[]> {
  return new Promise((resolve) => {
    execFile(
      'ssh-keyscan',
      ['-T', String(timeoutSeconds), '-t', types.join(','), '-p', String(endpoint.port), endpoint.host],
      { timeout: (timeoutSeconds + 5) * 1000, encoding: 'utf8', maxBuffer: 64 * 1024 },
      (_error, stdout) => {
        const keys: string[] = [];
        for (const line of (stdout ?? '').split('\n')) {
          if (line.startsWith('#') || line.trim() === '') continue;
          const [, type, base64] = line.trim().split(/\s+/);
          if (type !== undefined && base64 !== undefined) keys.push(`${type} ${base64}`);
        }
        resolve(keys);
      },
    );
  });
}

export interface ProbeResult {
  /** true: the server presented the attested key; false: it did not answer before the deadline. */
  readonly answered: boolean;
}

/**
 * Whether something listens at the endpoint now (a TCP connection opens; it is closed at
 * once). Waiting for a VM's sshd to start costs a loopback connection per look instead
 * of an ssh-keyscan process; whether it is an SSH server is for ssh-keyscan to find out.
 */
export function listening(endpoint: SshEndpoint, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: endpoint.host, port: endpoint.port });
    const done = (open: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(open);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => done(true));
    socket.on('error', () => done(false));
  });
}

/** How often scanHostKeys looks for the server: every 20 ms for its first second (a VM's sshd starts then), then every 100 ms. */
const FAST_LOOKS = 50;
const FAST_LOOK_MS = 20;
const SLOW_LOOK_MS = 100;

/**
 * The keys the endpoint presents, asked again until it answers, `deadline` passes or
 * `signal` aborts ([]). Until something listens there, it is looked for with a connection
 * (`listening`: every 20 ms for a second, then every 100 ms — the launch waits on this, and
 * a look costs no process); ssh-keyscan runs once something does (and again, backing off
 * to 500 ms, while it reads no key of the types asked for: a port forward that accepts
 * before the guest's sshd runs, a server that is not SSH).
 */
export async function scanHostKeys(endpoint: SshEndpoint, deadline: number, signal?: AbortSignal, types?: readonly ScanType[]): Promise<string[]> {
  let keyscanDelay = 25;
  for (let look = 0; signal?.aborted !== true; look++) {
    let delay = look < FAST_LOOKS ? FAST_LOOK_MS : SLOW_LOOK_MS;
    if (await listening(endpoint, Math.max(100, Math.min(1000, deadline - Date.now())))) {
      const keys = await presentedHostKeys(endpoint, 3, types);
      if (keys.length > 0) return keys;
      delay = keyscanDelay = Math.min(keyscanDelay * 2, 500);
    }
    if (Date.now() + delay > deadline) return [];
    await new Promise((r) => setTimeout(r, delay));
  }
  return [];
}

/** The endpoint check on keys already scanned: none ⇒ not answered; some, but not the attested one ⇒ HOST_KEY_MISMATCH. */
export function checkPresentedKeys(endpoint: SshEndpoint, presented: readonly string[], attested: string): ProbeResult {
  if (presented.length === 0) return { answered: false };
  const want = parseSshPublicKey(attested).blob;
  const matches = presented.some((k) => {
    try {
      return parseSshPublicKey(k).blob.equals(want);
    } catch {
      return false;
    }
  });
  if (matches) return { answered: true };
  throw new TrustlaunchError('HOST_KEY_MISMATCH', `the SSH server at ${endpoint.host}:${endpoint.port} (where the manager says the VM is) presents another host key than the one the CA attested`, {
    detail: { check: 'endpoint', endpoint, presented: presented.slice(0, 4) },
  });
}

/**
 * Asks the endpoint for its host keys until it answers or `deadline` passes (sshd may still
 * be starting, or re-reading its configuration for the host certificate). An answer without
 * the attested key is HOST_KEY_MISMATCH.
 */
export async function probeHostKey(endpoint: SshEndpoint, attested: string, deadline: number): Promise<ProbeResult> {
  return checkPresentedKeys(endpoint, await scanHostKeys(endpoint, deadline, undefined, [scanTypeOf(attested)]), attested);
}

export interface SshCommandOptions {
  readonly endpoint: SshEndpoint;
  /** The VM id: the name the host key and the certificate are checked against. */
  readonly alias: string;
  readonly knownHostsFile: string;
  readonly user: string;
  readonly identityFile?: string | undefined;
  /** The remote command's words (none: an interactive login). */
  readonly command?: readonly string[];
  /** Extra `-o` options placed before ours (tests: BatchMode=yes). */
  readonly extraOptions?: readonly string[];
}

/** The `ssh` argument vector: strict host key checking against trustlaunch's file only, under the VM's name. */
export function sshArguments(o: SshCommandOptions): string[] {
  const endpoint = checkEndpoint(o.endpoint);
  if (!/^[a-z_][a-z0-9_.-]{0,31}$/i.test(o.user)) throw new TrustlaunchError('MALFORMED_REQUEST', `not a user name: ${JSON.stringify(o.user.slice(0, 40))}`);
  return [
    ...(o.extraOptions ?? []).flatMap((x) => ['-o', x]),
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${o.knownHostsFile}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', `HostKeyAlias=${o.alias}`,
    '-o', 'UpdateHostKeys=no',
    '-o', 'CheckHostIP=no',
    '-o', 'ConnectionAttempts=3',
    ...(o.identityFile === undefined ? [] : ['-o', 'IdentitiesOnly=yes', '-i', o.identityFile]),
    '-p', String(endpoint.port),
    '-l', o.user,
    endpoint.host, // checked: an address or a DNS name, so never read as an option
    ...(o.command ?? []),
  ];
}

/** The same command as a line a person can paste (single-quoted where needed). */
export function shellLine(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
