// trustlaunch process guest, image format 1 (docs/process-vms.md).
//
// This file IS the image: the process VM backend writes exactly these bytes (as measured
// by the hypervisor; their SHA-256 is the kernel digest the CA allowlists) into
// `node --input-type=module -`. It uses only node: built-ins and the system's ssh-keygen
// and sshd, so nothing but these bytes decides what the VM does.
//
// Boot: a fresh Ed25519 host key in a private temp dir → `host-key` on the VM channel
// (fd 3, newline-delimited JSON, docs/vm-channel.md) → wait for `config` → sshd on
// 127.0.0.1:sshPort with that key → `ready`. A `host-certificate` that certifies our key
// is renamed into place as sshd's HostCertificate (named in sshd_config from the start:
// sshd loads it for every connection, so no reload), then `certificate-installed`.
// Malformed or invalid lines are dropped and counted, changing nothing (as the QEMU guest).
// The host key is never written to stdout/stderr: that is the console, which dom0 reads.
// SIGTERM, or the channel closing (the hypervisor went away), stops sshd and every process
// carrying this VM's marker, removes the temp dir and exits.
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import process from 'node:process';
import { setTimeout } from 'node:timers';
import { TextDecoder } from 'node:util';

const SSHD = '/usr/sbin/sshd';
const SSH_KEYGEN = '/usr/bin/ssh-keygen';
const MAX_LINE = 16 * 1024;
const MAX_KEYS = 16;
const LISTEN_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 2_000;

// --- console (stdout/stderr: dom0 reads it; never a key) ---------------------------------

/** @param {string} line */
function say(line) {
  try {
    process.stdout.write(`trustlaunch-guest: ${line}\n`);
  } catch {
    // the console is gone; the channel decides our life
  }
}
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);

// --- validation (the same rules as the QEMU guest's channel.sh) --------------------------

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const AUTHORIZED_KEY = /^(?:ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com|ssh-rsa) [A-Za-z0-9+/]+={0,3}(?: [\x20-\x7e]*)?$/;
const HOST_CERT = /^ssh-ed25519-cert-v01@openssh\.com [A-Za-z0-9+/]+={0,3}(?: [\x20-\x7e]*)?$/;
const HOST_KEY = /^ssh-ed25519 [A-Za-z0-9+/]+={0,3}$/;
const MARKER = /^[0-9a-f]{32}$/;
const USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
const SAFE_PATH = /^\/[A-Za-z0-9_./-]+$/;

/**
 * @typedef {{ hostname: string, authorizedKeys: string[], sshPort: number }} Config
 * @param {Record<string, unknown>} m
 * @returns {Config | string} the config, or why it is invalid
 */
function validConfig(m) {
  const { hostname, authorizedKeys, sshPort } = m;
  if (typeof hostname !== 'string' || !HOSTNAME.test(hostname)) return 'config: invalid hostname';
  if (typeof sshPort !== 'number' || !Number.isInteger(sshPort) || sshPort < 1 || sshPort > 65535) return 'config: invalid sshPort';
  if (!Array.isArray(authorizedKeys) || authorizedKeys.length < 1 || authorizedKeys.length > MAX_KEYS) return 'config: authorizedKeys missing';
  /** @type {string[]} */
  const keys = [];
  for (const k of authorizedKeys) {
    if (typeof k !== 'string' || k.length > 8192 || !AUTHORIZED_KEY.test(k)) return 'config: invalid authorized key';
    keys.push(k);
  }
  return { hostname, authorizedKeys: keys, sshPort };
}

// --- helpers -------------------------------------------------------------------------------

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs a tool to completion; its stdout is returned (never echoed to the console).
 * @param {string} file @param {string[]} args
 * @returns {Promise<{ ok: boolean, stdout: string, stderr: string }>}
 */
function run(file, args) {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe', devNull], cwd: dir, timeout: 10_000 });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (/** @type {string} */ d) => (stdout = (stdout + d).slice(0, 1 << 16)));
    child.stderr?.setEncoding('utf8').on('data', (/** @type {string} */ d) => (stderr = (stderr + d).slice(0, 1 << 16)));
    child.once('error', (e) => resolve({ ok: false, stdout, stderr: e.message }));
    child.once('close', (code) => resolve({ ok: code === 0, stdout, stderr }));
  });
}

/**
 * Whether sshd holds a socket listening on 127.0.0.1:port (another process may listen there).
 * @param {number} port
 */
function sshdListens(port) {
  const pid = sshd?.pid;
  if (pid === undefined) return false;
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  /** @type {Set<string>} */
  const held = new Set();
  let table = '';
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        held.add(readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        // closed meanwhile
      }
    }
    table = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return false;
  }
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A' && held.has(`socket:[${f[9]}]`)) return true;
  }
  return false;
}

// --- state -----------------------------------------------------------------------------------

const marker = process.env['TRUSTLAUNCH_VM_MARKER'] ?? '';
if (!MARKER.test(marker)) {
  say('no valid TRUSTLAUNCH_VM_MARKER in the environment; refusing to boot');
  process.exit(2);
}
const user = userInfo().username;
const dir = mkdtempSync(join(tmpdir(), 'tl-guest-'));
chmodSync(dir, 0o700);
if (!SAFE_PATH.test(dir) || !USER.test(user)) {
  rmSync(dir, { recursive: true, force: true });
  say('unusable temp dir or user name; refusing to boot');
  process.exit(2);
}
const hostKeyPath = join(dir, 'ssh_host_ed25519_key');
const certPath = `${hostKeyPath}-cert.pub`;
const configPath = join(dir, 'sshd_config');
const keysPath = join(dir, 'authorized_keys');
// Children get /dev/null as fd 3, so the VM channel never leaks into sshd or a session.
const devNull = openSync('/dev/null', 'r+');

/** @type {Config | undefined} */
let config;
let certInstalled = false;
let readySent = false;
let dropped = 0;
/** @type {import('node:child_process').ChildProcess | undefined} */
let sshd;
let stopping = false;

const channel = new Socket({ fd: 3, readable: true, writable: true });

/** @param {Record<string, unknown>} message */
function send(message) {
  if (!channel.destroyed) channel.write(`${JSON.stringify({ v: 1, ...message })}\n`);
}

/** @param {string} why */
function drop(why) {
  dropped++;
  say(`dropped a channel line: ${why} (total ${dropped})`);
  send({ type: 'log', message: `dropped: ${why} (total ${dropped})` });
}

// --- sshd --------------------------------------------------------------------------------------

function writeSshdConfig() {
  if (config === undefined) return;
  const lines = [
    'ListenAddress 127.0.0.1',
    `Port ${config.sshPort}`,
    `HostKey ${hostKeyPath}`,
    // Named from the start, present or not: OpenSSH 9.2's sshd re-executes for every
    // connection and loads the certificate then (skipping a missing file), so installing
    // it is a rename, never a reload (docs/process-vms.md).
    `HostCertificate ${certPath}`,
    `AuthorizedKeysFile ${keysPath}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AllowUsers ${user}`,
    'StrictModes no', // the temp dir may live under a world-writable /tmp
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'PermitRootLogin prohibit-password',
    'PermitUserEnvironment no',
    'AllowTcpForwarding no',
    'AllowStreamLocalForwarding no',
    'AllowAgentForwarding no',
    'PermitTunnel no',
    'X11Forwarding no',
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    // Sessions carry the VM's marker too, so stopping the VM finds them.
    `SetEnv TRUSTLAUNCH_VM_MARKER=${marker}`,
    'LogLevel INFO',
  ];
  writeFileSync(`${configPath}.new`, `${lines.join('\n')}\n`, { mode: 0o600 });
  renameSync(`${configPath}.new`, configPath);
}

/** Waits until sshd listens on the port. */
async function waitListening() {
  const port = /** @type {Config} */ (config).sshPort;
  const deadline = Date.now() + LISTEN_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (sshd === undefined || sshd.exitCode !== null || sshd.signalCode !== null) return false;
    if (sshdListens(port)) return true;
    await sleep(10);
  }
  return false;
}

async function startSshd() {
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation
  writeSshdConfig();
  const child = spawn(SSHD, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe', devNull], cwd: dir });
  sshd = child;
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (/** @type {string} */ d) => {
    for (const l of d.split('\n')) if (l !== '') say(`sshd: ${l}`);
  });
  child.once('exit', (code, signal) => {
    if (!stopping) {
      say(`sshd exited (${code ?? signal}); the VM stops`);
      void shutdown(1);
    }
  });
  if (!(await waitListening())) {
    say('sshd did not start listening');
    await shutdown(1);
    return false;
  }
  say(`sshd listening on 127.0.0.1 port ${/** @type {Config} */ (config).sshPort}`);
  return true;
}

// --- messages ----------------------------------------------------------------------------------

/** @param {Record<string, unknown>} m */
function onConfig(m) {
  if (config !== undefined) return drop('config already applied');
  const c = validConfig(m);
  if (typeof c === 'string') return drop(c);
  writeFileSync(keysPath, `${c.authorizedKeys.join('\n')}\n`, { mode: 0o600 });
  config = c;
  say(`configured as ${c.hostname}`);
  // Not awaited: the next lines (a certificate) are handled while sshd starts.
  void startSshd().then((up) => {
    if (!up) return;
    send({ type: 'ready', sshPort: c.sshPort });
    readySent = true;
    say('ready');
    // A certificate installed meanwhile is presented from the first connection.
    if (certInstalled) send({ type: 'certificate-installed' });
  });
}

/** `SHA256:…` of our host key, as ssh-keygen prints it: unpadded base64 of the SHA-256 of the key blob. */
function ownFingerprint() {
  const blob = readFileSync(`${hostKeyPath}.pub`, 'utf8').split(' ')[1] ?? '';
  return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

/**
 * The fingerprint of the key an Ed25519 host certificate certifies, from `ssh-keygen -L`
 * (which checks the CA's signature while loading it: a forged one lists nothing), or
 * undefined. Only fixed lines count — 1 the file name, 2 the type, 3 the certified key —
 * so text in later fields (a key ID, principals: they may hold newlines) cannot pose as them.
 * @param {string} listing
 */
function certifiedKey(listing) {
  const lines = listing.split('\n');
  if (!/^\s*Type: ssh-ed25519-cert-v01@openssh\.com host certificate$/.test(lines[1] ?? '')) return undefined;
  return /^\s*Public key: ED25519-CERT (SHA256:[A-Za-z0-9+/]+)$/.exec(lines[2] ?? '')?.[1];
}

/** @param {Record<string, unknown>} m */
async function onCertificate(m) {
  const line = m['certificate'];
  if (typeof line !== 'string' || line.length > 8192 || !HOST_CERT.test(line)) return drop('host-certificate: not an ssh-ed25519 certificate line');
  const incoming = join(dir, 'incoming-cert.pub');
  writeFileSync(incoming, `${line}\n`, { mode: 0o600 });
  const listing = await run(SSH_KEYGEN, ['-L', '-f', incoming]);
  const certified = listing.ok ? certifiedKey(listing.stdout) : undefined;
  if (certified === undefined) {
    rmSync(incoming, { force: true });
    return drop('host-certificate: not a valid host certificate');
  }
  if (certified !== ownFingerprint()) {
    rmSync(incoming, { force: true });
    return drop('host-certificate: certifies another key');
  }
  // rename(2) is atomic: each new connection's sshd loads the previous file or this whole
  // one. No signal, so no connection is ever reset.
  renameSync(incoming, certPath);
  certInstalled = true;
  say('host certificate installed');
  // Before sshd listens, `ready` comes first (onConfig sends certificate-installed after it).
  if (readySent) send({ type: 'certificate-installed' });
}

/** @param {Buffer} bytes */
async function onLine(bytes) {
  if (bytes.length > MAX_LINE) return drop('line too long');
  /** @type {unknown} */
  let m;
  try {
    m = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return drop('malformed line');
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return drop('not a JSON object');
  const msg = /** @type {Record<string, unknown>} */ (m);
  if (msg['v'] !== 1) return drop('unsupported or missing v');
  if (msg['type'] === 'config') return onConfig(msg);
  if (msg['type'] === 'host-certificate') return onCertificate(msg);
  // unknown types are ignored (forward compatibility)
}

// Lines are handled one at a time, in order, and only once the host key exists and was sent.
/** @type {() => void} */
let keySent = () => undefined;
/** @type {Promise<unknown>} */
let queue = new Promise((r) => (keySent = () => r(undefined)));
/** @type {Buffer[]} */
let pending = [];
let pendingBytes = 0;
let overlong = false;
channel.on('data', (/** @type {Buffer} */ chunk) => {
  let start = 0;
  for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
    const part = chunk.subarray(start, nl);
    start = nl + 1;
    if (overlong || pendingBytes + part.length > MAX_LINE) {
      overlong = false;
      pending = [];
      pendingBytes = 0;
      queue = queue.then(() => drop('line too long'));
      continue;
    }
    const line = Buffer.concat([...pending, part]);
    pending = [];
    pendingBytes = 0;
    queue = queue.then(() => onLine(line)).catch((e) => say(`error: ${e instanceof Error ? e.message : String(e)}`));
  }
  const rest = chunk.subarray(start);
  if (overlong || pendingBytes + rest.length > MAX_LINE) {
    overlong = true; // dropped up to the next newline, without buffering it
    pending = [];
    pendingBytes = 0;
  } else if (rest.length > 0) {
    pending.push(Buffer.from(rest));
    pendingBytes += rest.length;
  }
});
channel.on('end', () => void shutdown(0, 'the VM channel closed'));
channel.on('error', () => void shutdown(0, 'the VM channel failed'));

// --- shutdown ----------------------------------------------------------------------------------

/**
 * This VM's other processes: our descendants (sshd, its per-connection processes and their
 * sessions — collected while the tree is intact, since sshd does not take its children
 * down with it) and any process whose environment carries our marker (sessions, via SetEnv).
 */
function vmProcesses() {
  const needle = Buffer.from(`\0TRUSTLAUNCH_VM_MARKER=${marker}\0`);
  /** @type {Map<number, number>} pid → parent pid */
  const parents = new Map();
  /** @type {Set<number>} */
  const found = new Set();
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      parents.set(Number(name), Number(fields[1]));
      const env = Buffer.concat([Buffer.from([0]), readFileSync(`/proc/${name}/environ`)]);
      if (env.includes(needle)) found.add(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!found.has(pid) && (ppid === process.pid || found.has(ppid))) {
        found.add(pid);
        grew = true;
      }
    }
  }
  return found;
}

/** @param {number} pid */
function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** @param {Iterable<number>} pids @param {NodeJS.Signals} signal */
function signalAll(pids, signal) {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** @type {Promise<void> | undefined} */
let stopped;
/** @param {number} code @param {string} [why] */
function shutdown(code, why) {
  stopped ??= (async () => {
    stopping = true;
    if (why !== undefined) say(`${why}; stopping`);
    const all = vmProcesses();
    signalAll(all, 'SIGTERM');
    const deadline = Date.now() + STOP_GRACE_MS;
    while (Date.now() < deadline && [...all].some(alive)) await sleep(20);
    for (let round = 0; round < 10; round++) {
      const left = new Set([...all].filter(alive));
      for (const pid of vmProcesses()) left.add(pid);
      if (left.size === 0) break;
      signalAll(left, 'SIGKILL');
      await sleep(10);
    }
    rmSync(dir, { recursive: true, force: true });
    closeSync(devNull);
    channel.destroy();
    say('stopped');
    process.exit(code);
  })();
  return stopped;
}
process.once('SIGTERM', () => void shutdown(0, 'SIGTERM'));
process.once('SIGINT', () => void shutdown(0, 'SIGINT'));
process.once('SIGHUP', () => void shutdown(0, 'SIGHUP'));

// --- boot ----------------------------------------------------------------------------------------

say('booting');
const keygen = await run(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', hostKeyPath]);
if (!keygen.ok) {
  say(`ssh-keygen failed: ${keygen.stderr.trim().slice(0, 200)}`);
  await shutdown(1);
}
const [type, body] = readFileSync(`${hostKeyPath}.pub`, 'utf8').trim().split(' ');
const hostKey = `${type} ${body}`;
if (!HOST_KEY.test(hostKey)) {
  say('unexpected host key format');
  await shutdown(1);
}
send({ type: 'host-key', key: hostKey });
say('host key generated and sent on the VM channel');
keySent();
