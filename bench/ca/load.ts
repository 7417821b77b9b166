// The load process of the CA benchmark (bench/ca.ts runs it as a separate process, so
// its CPU is not the CA's): pre-generates valid evidence with distinct nonces on the
// node's software TPM, then drives POST /v1/evidence over HTTPS at a fixed concurrency
// (one keep-alive TLS connection per in-flight request, HTTP/1.1 written by hand) and
// prints one JSON result line.
//
//   node --import tsx bench/ca/load.ts CONFIG.json
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import { toBase64url } from '../../src/protocol/base64url.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { PLATFORM_PCRS } from '../../src/protocol/pcrs.js';
import type { EventLogJson, LaunchClaims } from '../../src/protocol/messages.js';
import { formatSshPublicKey, generateKeyPair } from '../../src/crypto/index.js';
import { openSoftwareTpm } from '../../src/tpm/sim/device.js';
import type { EkAlgorithm } from '../../src/tpm/auth-device.js';

export interface LoadConfig {
  readonly url: string;
  /** More CA processes (sharing the database): connections are spread over url and these. */
  readonly moreUrls?: readonly string[];
  readonly rootPem: string;
  readonly statePath: string;
  readonly ek: EkAlgorithm;
  readonly nodeId: string;
  readonly kernel: string;
  readonly eventLog: EventLogJson;
  readonly concurrency: number;
  readonly warmupRequests: number;
  readonly requests: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly ok: number;
  readonly failed: number;
  readonly firstFailure?: string;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly generationSeconds: number;
  /** CPU seconds (user + system) of this process while it drove requests (warm-up and timed). */
  readonly driveCpuSeconds: number;
}

async function generate(cfg: LoadConfig, count: number): Promise<string[]> {
  const device = openSoftwareTpm(cfg.statePath);
  await device.powerOn();
  // Power-on reset the PCRs: bring them back to what the measured boot left (the log replays).
  for (const e of cfg.eventLog) await device.pcrExtend(e.pcrIndex, Buffer.from(e.digests[0]?.digest ?? '', 'hex'));
  const ak = await device.ensureAttestationKey(cfg.ek);
  const values = await device.pcrRead(PLATFORM_PCRS);
  const pcrs = { sha256: Object.fromEntries([...values].map(([i, v]) => [String(i), Buffer.from(v).toString('hex')])) };
  const hostKeys = Array.from({ length: 64 }, () => formatSshPublicKey(generateKeyPair('ed25519').publicKey));
  const engine = device.engine;
  const now = Math.floor(Date.now() / 1000);
  const bodies: string[] = [];
  for (let i = 0; i < count; i++) {
    const vmId = `vm-${i}`;
    const claims: LaunchClaims = {
      nodeId: cfg.nodeId,
      vmId,
      nonce: newNonce(),
      hostname: `${vmId}.bench.test`,
      kernel: cfg.kernel as LaunchClaims['kernel'],
      sshHostKey: hostKeys[i % hostKeys.length] as string,
      time: now,
    };
    const q = engine.quote(ak.handle, PLATFORM_PCRS, createHash('sha256').update(canonicalBytes(claims)).digest());
    bodies.push(JSON.stringify({ claims, quote: { attest: toBase64url(q.attest), signature: toBase64url(q.signature), pcrs }, eventLog: cfg.eventLog }));
  }
  await device.powerOff();
  return bodies;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/**
 * One keep-alive HTTPS/1.1 connection that sends pre-serialised requests and reads just
 * enough of each response (status, Content-Length, body). A general client (undici) costs
 * ~100 µs of CPU per request here, on the same two cores the CA runs on; this one a
 * fraction of that, so the figure is the CA's. Responses must be complete and well-formed.
 */
class RawConnection {
  readonly #socket: TLSSocket;
  #buffer: Buffer = Buffer.alloc(0);
  #waiting: ((r: { status: number; body: string }) => void) | undefined;
  #failed: ((e: Error) => void) | undefined;

  private constructor(socket: TLSSocket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
      this.#parse();
    });
    const fail = (e: Error): void => {
      const f = this.#failed;
      this.#waiting = this.#failed = undefined;
      f?.(e);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static open(url: URL, ca: string): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca: [ca] }, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  request(bytes: Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      this.#waiting = resolve;
      this.#failed = reject;
      this.#socket.write(bytes);
    });
  }

  #parse(): void {
    const end = this.#buffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.#buffer.subarray(0, end).toString('latin1');
    const status = Number(head.slice(9, 12));
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (m === null) throw new Error(`a response without Content-Length: ${head.slice(0, 200)}`);
    const total = end + 4 + Number(m[1]);
    if (this.#buffer.length < total) return;
    const body = this.#buffer.subarray(end + 4, total).toString('utf8');
    this.#buffer = this.#buffer.subarray(total);
    const done = this.#waiting;
    this.#waiting = this.#failed = undefined;
    done?.({ status, body });
  }

  close(): void {
    this.#socket.end();
  }
}

function serialise(url: URL, body: string): Buffer {
  const bytes = Buffer.from(body, 'utf8');
  return Buffer.concat([Buffer.from(`POST /v1/evidence HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${bytes.length}\r\n\r\n`, 'latin1'), bytes]);
}

/** Sends `requests[from..to)` over the connections; latencies (ms) of the affirming answers. */
async function drive(connections: readonly RawConnection[], requests: readonly Buffer[], from: number, to: number): Promise<{ latencies: Float64Array; ok: number; failed: number; firstFailure?: string; seconds: number }> {
  const latencies = new Float64Array(to - from);
  let next = from;
  let ok = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  const start = process.hrtime.bigint();
  await Promise.all(
    connections.map(async (connection) => {
      for (;;) {
        const i = next++;
        if (i >= to) return;
        const t0 = process.hrtime.bigint();
        try {
          const res = await connection.request(requests[i] as Buffer);
          if (res.status === 200 && res.body.includes('"status":"affirming"')) {
            latencies[ok++] = Number(process.hrtime.bigint() - t0) / 1e6;
          } else {
            failed++;
            firstFailure ??= `${res.status} ${res.body.slice(0, 300)}`;
          }
        } catch (e) {
          failed++;
          firstFailure ??= (e as Error).message;
          return;
        }
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { latencies: latencies.subarray(0, ok).sort(), ok, failed, ...(firstFailure === undefined ? {} : { firstFailure }), seconds };
}

export async function runLoad(cfg: LoadConfig): Promise<LoadResult> {
  const t0 = Date.now();
  const url = new URL(cfg.url);
  const requests = (await generate(cfg, cfg.warmupRequests + cfg.requests)).map((b) => serialise(url, b));
  const generationSeconds = (Date.now() - t0) / 1000;
  const urls = [url, ...(cfg.moreUrls ?? []).map((u) => new URL(u))];
  const connections = await Promise.all(Array.from({ length: cfg.concurrency }, (_, i) => RawConnection.open(urls[i % urls.length] as URL, cfg.rootPem)));
  try {
    const cpu0 = process.cpuUsage();
    await drive(connections, requests, 0, cfg.warmupRequests);
    const r = await drive(connections, requests, cfg.warmupRequests, requests.length);
    const cpu = process.cpuUsage(cpu0);
    return {
      requests: cfg.requests,
      ok: r.ok,
      failed: r.failed,
      ...(r.firstFailure === undefined ? {} : { firstFailure: r.firstFailure }),
      seconds: r.seconds,
      perSecond: r.ok / r.seconds,
      p50Ms: percentile(r.latencies, 50),
      p99Ms: percentile(r.latencies, 99),
      generationSeconds,
      driveCpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
  } finally {
    for (const c of connections) c.close();
  }
}

// Run as a process: the config file path is the argument; the result is the last stdout line.
if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\0')) {
  const cfg = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as LoadConfig;
  process.stdout.write(`${JSON.stringify(await runLoad(cfg))}\n`);
}

