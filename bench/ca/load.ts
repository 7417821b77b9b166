// The load process of the CA benchmark (bench/ca.ts runs it as a separate process, so
// its CPU is not the CA's): pre-generates valid evidence with distinct nonces on the
// node's software TPM, then drives POST /v1/evidence over HTTPS at a fixed concurrency
// (one keep-alive connection per in-flight request) and prints one JSON result line.
//
//   node --import tsx bench/ca/load.ts CONFIG.json
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client } from 'undici';
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

/** Sends `bodies[from..to)` over `concurrency` connections; returns latencies (ms) of the 200s. */
async function drive(cfg: LoadConfig, clients: Client[], bodies: readonly string[], from: number, to: number): Promise<{ latencies: Float64Array; ok: number; failed: number; firstFailure?: string; seconds: number }> {
  const latencies = new Float64Array(to - from);
  let next = from;
  let ok = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  const start = process.hrtime.bigint();
  await Promise.all(
    clients.map(async (client) => {
      for (;;) {
        const i = next++;
        if (i >= to) return;
        const t0 = process.hrtime.bigint();
        try {
          const res = await client.request({ method: 'POST', path: '/v1/evidence', headers: { 'content-type': 'application/json' }, body: bodies[i] as string });
          const text = await res.body.text();
          if (res.statusCode === 200 && text.includes('"affirming"')) {
            latencies[ok++] = Number(process.hrtime.bigint() - t0) / 1e6;
          } else {
            failed++;
            firstFailure ??= `${res.statusCode} ${text.slice(0, 300)}`;
          }
        } catch (e) {
          failed++;
          firstFailure ??= (e as Error).message;
        }
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { latencies: latencies.subarray(0, ok).sort(), ok, failed, ...(firstFailure === undefined ? {} : { firstFailure }), seconds };
}

export async function runLoad(cfg: LoadConfig): Promise<LoadResult> {
  const t0 = Date.now();
  const bodies = await generate(cfg, cfg.warmupRequests + cfg.requests);
  const generationSeconds = (Date.now() - t0) / 1000;
  const clients = Array.from({ length: cfg.concurrency }, () => new Client(cfg.url, { connect: { ca: [cfg.rootPem], rejectUnauthorized: true }, pipelining: 1, keepAliveTimeout: 60_000 }));
  try {
    await drive(cfg, clients, bodies, 0, cfg.warmupRequests);
    const r = await drive(cfg, clients, bodies, cfg.warmupRequests, bodies.length);
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
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

// Run as a process: the config file path is the argument; the result is the last stdout line.
if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\0')) {
  const cfg = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as LoadConfig;
  const result = await runLoad(cfg);
  const u = process.cpuUsage(); process.stdout.write(`${JSON.stringify({ ...result, cpuUser: u.user / 1e6, cpuSys: u.system / 1e6 })}\n`);
}

