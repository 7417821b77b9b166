// `npm run bench -- node [--json] [--launches N] [--rounds N] [--only gate|launch]`
//
// 1. The launch gate on a 64 MiB mini-domain image vs the `hash` baseline: plain streaming
//    SHA-256 (1 MiB updates) of the same bytes, in the same run, paired rounds, the median
//    ratio reported. The gate is the whole pipeline: hand-over (page transfer, as dom0's
//    loader does; the copy path is reported too), hash of the copy, compare, PCR 12 extend
//    and log, device assignment, start. Goal: ratio >= 0.9.
// 2. Process-VM launch with attestation (the real CA on loopback: `trustlaunch ca serve` in
//    a process of its own, SQLite file, default judge threads) vs the same launch with attestation turned off (a second node, the
//    benchmark/development switch), interleaved in the same run, 16 MiB image. Reported:
//    end-to-end p50/p99 of both, and the time attestation adds after the VM reported its
//    host key (quote, evidence to the CA, receipt and host certificate back, certificate
//    sent to the VM) minus the same span with attestation off. Goal: <= 10 ms p50 beyond
//    the hashing itself (the hashing happens in both paths).
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { generateKeyPairSync } from 'node:crypto';
import type { RunningNode } from '../src/node/node.js';
import { TrustlaunchError } from '../src/protocol/errors.js';
import { spawn, type ChildProcess } from 'node:child_process';
import type { CaAdminClient } from '../src/ca/client.js';
import { formatSshPublicKey } from '../src/crypto/ssh-keys.js';
import { sha256Digest } from '../src/protocol/digest.js';
import { newNonce } from '../src/protocol/nonce.js';
import { bootHypervisor, type HypervisorNode } from '../src/node/hypervisor/index.js';
import { createSelfSignedCa, issueCertificate } from '../src/crypto/x509.js';
import { manufactureTpm } from '../src/tpm/sim/manufacture.js';
import { MemoryStateStore } from '../src/tpm/sim/store.js';
import { SoftwareTpmDevice } from '../src/tpm/sim/device.js';
import { argInteger, argValue } from './lib/args.js';
import { percentile, type BenchContext } from './lib/report.js';

const MiB = 1024 * 1024;

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

/**
 * A collected heap and an empty task queue before a timed section: GC work that earlier
 * allocations scheduled (dom0 reading the 64 MiB image) must not land in whichever timed
 * section happens to yield first — only the gate yields, so it would always pay.
 */
async function gc(): Promise<void> {
  collect();
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

const median = (xs: readonly number[]): number => percentile(xs, 50);

// --- 1. the launch gate -----------------------------------------------------------------

async function gateNode(image: Uint8Array): Promise<HypervisorNode> {
  const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const ca = await createSelfSignedCa({ commonName: 'bench EK CA', privateKey: caKey });
  const store = new MemoryStateStore();
  await manufactureTpm(store, {
    algorithms: ['ecc-p256'],
    issueEkCertificate: async (req) => (await issueCertificate({ issuer: { certificate: ca, privateKey: caKey }, subjectPublicKey: req.publicKey, commonName: 'EK', profile: 'ek', tpm: req.tpm })).der,
  });
  return bootHypervisor({
    bootConfig: { v: 1, nodeId: 'bench-gate', launchPolicy: { miniDomainDigest: sha256Digest(image) } },
    platform: { firmware: { description: 'bench firmware', digest: sha256Digest('fw') }, hypervisor: { description: 'bench hypervisor', digest: sha256Digest('hv') } },
    openAuthDevice: () => new SoftwareTpmDevice({ store }),
    // The entry receives the measured bytes (a view) and starts nothing: the gate is what is timed.
    miniDomain: ({ image: measured }) => ({ stop: () => Promise.resolve(void measured.length) }),
    limits: { maxMiniDomainImageBytes: 80 * MiB, hostMemoryBytes: 2048 * MiB },
  });
}

function plainHash(bytes: Uint8Array): Buffer {
  const h = createHash('sha256');
  for (let at = 0; at < bytes.length; at += MiB) h.update(bytes.subarray(at, Math.min(bytes.length, at + MiB)));
  return h.digest();
}

/** Milliseconds `fn` takes, timed after gc(). */
async function timed(fn: () => unknown): Promise<number> {
  await gc();
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

interface GateRounds {
  readonly hashMs: number[];
  readonly gateMs: number[];
  /** hash / gate of each round. */
  readonly ratios: number[];
}

/**
 * One warm-up and `rounds` paired rounds: plain SHA-256 of the bytes, then the gate on what
 * dom0 hands over. `input` gives both for a round (the same bytes in the same memory).
 */
async function gateRounds(node: HypervisorNode, rounds: number, input: () => { hashed: Uint8Array; handed: Uint8Array | ArrayBuffer }): Promise<GateRounds> {
  const out: GateRounds = { hashMs: [], gateMs: [], ratios: [] };
  for (let r = 0; r < rounds + 1; r++) {
    const { hashed, handed } = input();
    const hash = await timed(() => plainHash(hashed));
    const gate = await timed(() => node.dom0.launchMiniDomain(handed));
    await node.dom0.stopMiniDomain();
    if (r === 0) continue; // warm-up
    out.ratios.push(hash / gate);
    out.gateMs.push(gate);
    out.hashMs.push(hash);
  }
  return out;
}

async function benchGate(ctx: BenchContext, rounds: number): Promise<void> {
  const image = randomBytes(64 * MiB);
  const node = await gateNode(image);
  let transferred: GateRounds;
  let copied: GateRounds;
  try {
    // The buffer dom0 is about to hand over (its pages are transferred).
    transferred = await gateRounds(node, rounds, () => {
      const pages = new ArrayBuffer(image.length);
      new Uint8Array(pages).set(image);
      return { hashed: new Uint8Array(pages), handed: pages };
    });
    // The copy path, in rounds of its own (its extra 64 MiB allocations would disturb the others).
    copied = await gateRounds(node, rounds, () => ({ hashed: image, handed: image }));
  } finally {
    await node.shutdown();
  }
  const { ratios, gateMs, hashMs } = transferred;
  const { ratios: copyRatios, gateMs: copyMs } = copied;
  const mibps = (ms: number): number => 64 / (ms / 1000);
  const best = (xs: readonly number[]): number => Math.min(...xs);
  ctx.report({
    bench: 'node',
    metric: 'launch gate throughput, 64 MiB image (pages transferred)',
    value: mibps(best(gateMs)),
    unit: 'MiB/s',
    baseline: mibps(best(hashMs)),
    note: `best of ${rounds} rounds each (as bench/hash); median of the paired round ratios ${median(ratios).toFixed(3)}. Baseline: plain streaming SHA-256 of the same buffer, same run. The gate includes hand-over, hash of the copy, compare, PCR 12 extend + log, device assignment, start`,
    goal: 'ratio >= 0.9',
  });
  ctx.report({
    bench: 'node',
    metric: 'launch gate throughput, 64 MiB image (copied from a Uint8Array)',
    value: mibps(best(copyMs)),
    unit: 'MiB/s',
    baseline: mibps(best(hashMs)),
    note: `the same gate when dom0 hands over a Uint8Array it keeps: one copy into fresh memory before the hash (for comparison; dom0 transfers); median paired ratio ${median(copyRatios).toFixed(3)}`,
  });
}

// --- 2. launch with and without attestation ----------------------------------------------

interface LaunchSample {
  readonly total: number;
  /** From the host-key report (the backend's timeline) to the final attestation state. */
  readonly afterHostKey: number;
}

/** Resolves when the node logs the final attestation event of `vm` (logged synchronously with the state change). */
type Finals = Map<string, (at: number) => void>;

async function launchOnce(node: RunningNode, finals: Finals, o: { vmId: string; digest: `sha256:${string}`; key: string }): Promise<LaunchSample> {
  const hv = node.hypervisor;
  const done = new Promise<number>((resolve) => finals.set(o.vmId, resolve));
  const t0 = performance.now();
  await node.dom0.vms.create({ vmId: o.vmId, image: o.digest, nonce: newNonce(), hostname: `${o.vmId}.bench.test`, authorizedKey: o.key, memoryMiB: 64 });
  const info = hv.dom0.vms().find((v) => v.name === o.vmId && v.state !== 'destroyed');
  if (info === undefined) throw new Error(`VM ${o.vmId} vanished`);
  const timer = setTimeout(() => finals.get(o.vmId)?.(Number.NaN), 60_000);
  const t1 = await done;
  clearTimeout(timer);
  finals.delete(o.vmId);
  const state = hv.dom0.vm(info.vmId).attestation;
  if (state.state !== 'attested' && state.state !== 'unattested') throw new Error(`VM ${o.vmId}: ${state.state} ${state.reason ?? ''}`);
  const timeline = node.backend.timeline(info.vmId);
  const hostKeyAt = timeline?.['host-key'];
  if (timeline === undefined || hostKeyAt === undefined) throw new Error('no host-key time in the backend timeline');
  await node.dom0.vms.delete(o.vmId);
  return { total: t1 - t0, afterHostKey: t1 - (timeline.spawnedAt + hostKeyAt) };
}

/** `trustlaunch ca serve` in its own process; resolves to its URL once it listens. */
function startCaProcess(dir: string): Promise<{ url: string; process: ChildProcess }> {
  const bin = new URL('../bin/trustlaunch.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [bin, 'ca', 'serve', '--dir', dir, '--listen', '127.0.0.1:0', '--log-level', 'silent', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new TrustlaunchError('TIMEOUT', 'the CA did not start within 60 s')), 60_000);
    child.once('exit', (code) => reject(new TrustlaunchError('UNAVAILABLE', `the CA exited with ${String(code)}`)));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      try {
        const { url } = JSON.parse(out) as { url: string };
        clearTimeout(timer);
        resolve({ url, process: child });
      } catch {
        // not the whole start-up line yet
      }
    });
  });
}

async function benchLaunch(ctx: BenchContext, launches: number): Promise<void> {
  // Loaded here, not at the top: the gate's rounds run in a process as lean as a node's hypervisor.
  const { initCaDirectory, loadCaDirectory } = await import('../src/ca/directory.js');
  const { CaAdminClient } = await import('../src/ca/client.js');
  const { startBenchNode } = await import('./lib/node.js');
  const { defaultGuestImage, padGuestImage } = await import('../src/node/vm/process/index.js');
  const dir = mkdtempSync(join(tmpdir(), 'tl-bench-node-'));
  const nodes: RunningNode[] = [];
  let caProcess: ChildProcess | undefined;
  let admin: CaAdminClient | undefined;
  try {
    const init = await initCaDirectory(join(dir, 'ca'));
    const material = await loadCaDirectory(join(dir, 'ca'));
    const started = await startCaProcess(join(dir, 'ca'));
    caProcess = started.process;
    const service = { url: started.url };
    admin = new CaAdminClient({ url: service.url, root: material.root.certificate, token: init.adminToken });
    const rootFile = join(dir, 'ca-root.pem');
    await writeFile(rootFile, material.root.certificate.pem);

    const image = padGuestImage(defaultGuestImage(), 16 * MiB, 'bench node');
    const digest = sha256Digest(image);
    await admin.addAllowlist({ name: 'bench-guest', kernel: digest });
    const key = formatSshPublicKey(generateKeyPairSync('ed25519').publicKey);

    const made: Record<'on' | 'off', RunningNode> = {} as Record<'on' | 'off', RunningNode>;
    const finals: Finals = new Map();
    for (const mode of ['on', 'off'] as const) {
      const node = await startBenchNode(
        { dir: join(dir, 'ca'), url: service.url, rootFile, admin },
        {
          dir: join(dir, `node-${mode}`),
          nodeId: `bench-${mode}`,
          attestation: mode,
          platform: 'bench-node',
          log: (l) => {
            if (l.event === 'attested' || l.event === 'unattested' || l.event === 'refused') finals.get(String(l['vm']))?.(performance.now());
          },
          started: (n) => nodes.push(n),
        },
      );
      await node.dom0.images.putBytes(image);
      made[mode] = node;
    }

    const samples: Record<'on' | 'off', LaunchSample[]> = { on: [], off: [] };
    for (let i = -2; i < launches; i++) {
      // Interleaved, alternating which goes first, so both see the same machine.
      const order = i % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const);
      for (const mode of order) {
        const s = await launchOnce(made[mode], finals, { vmId: `vm-${mode}-${i + 2}`, digest, key });
        if (i >= 0) samples[mode].push(s);
      }
    }
    const on = samples.on;
    const off = samples.off;
    const totalOn = on.map((s) => s.total);
    const totalOff = off.map((s) => s.total);
    const addedOn = on.map((s) => s.afterHostKey);
    const offAfter = median(off.map((s) => s.afterHostKey));
    ctx.report({ bench: 'node', metric: 'process-VM launch to attested, 16 MiB image, p50', value: median(totalOn), unit: 'ms', baseline: median(totalOff), note: `baseline: the same launch with attestation off (host key reported), interleaved; ${launches} launches each` });
    ctx.report({ bench: 'node', metric: 'process-VM launch to attested, 16 MiB image, p99', value: percentile(totalOn, 99), unit: 'ms', baseline: percentile(totalOff, 99), note: 'baseline: attestation off' });
    ctx.report({
      bench: 'node',
      metric: 'time attestation adds, p50',
      value: median(addedOn) - offAfter,
      unit: 'ms',
      baseline: null,
      note: `from the VM's host-key report to attested (quote, CA round trip on loopback, certificate to the VM), minus the same span with attestation off (${offAfter.toFixed(2)} ms); end-to-end p50 difference ${(median(totalOn) - median(totalOff)).toFixed(1)} ms`,
      goal: '<= 10 ms p50 beyond the hashing itself',
    });
    ctx.report({ bench: 'node', metric: 'time attestation adds, p99', value: percentile(addedOn, 99) - offAfter, unit: 'ms', baseline: null, note: `end-to-end p99 difference ${(percentile(totalOn, 99) - percentile(totalOff, 99)).toFixed(1)} ms` });
  } finally {
    for (const n of nodes) await n.stop().catch(() => undefined);
    await admin?.close();
    if (caProcess !== undefined && caProcess.exitCode === null) {
      const exited = new Promise((r) => caProcess?.once('exit', r));
      caProcess.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(ctx: BenchContext): Promise<void> {
  const only = argValue(ctx.args, '--only');
  const launches = argInteger(ctx.args, '--launches', 30);
  const rounds = argInteger(ctx.args, '--rounds', 15);
  if (!Number.isSafeInteger(launches) || launches < 1 || !Number.isSafeInteger(rounds) || rounds < 1) throw new RangeError('--launches and --rounds take positive integers');
  if (only === undefined || only === 'gate') await benchGate(ctx, rounds);
  if (only === undefined || only === 'launch') await benchLaunch(ctx, launches);
}
