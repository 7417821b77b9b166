// CA throughput end to end (`npm run bench -- ca --json`): a `trustlaunch ca serve` process
// with durable storage (SQLite WAL synchronous=FULL; PostgreSQL with synchronous_commit=on
// when TRUSTLAUNCH_TEST_PG or TRUSTLAUNCH_BENCH_PG names a server), a registered software-
// TPM node, and a separate load process (bench/ca/load.ts) posting pre-generated valid
// evidence with distinct nonces over HTTPS at a fixed concurrency. Baseline: the raw crypto
// bound (bench/ca/crypto-bound.ts) on every CPU, measured in the same run. Where the time
// goes: CPU per receipt of each kind of CA thread, of the PostgreSQL backends, of the load
// process, the transport floor (the same load against a server that only does TLS and
// HTTP: bench/ca/floor-server.ts) and the ceiling (one such server per CPU that also does
// a receipt's crypto: what TLS, HTTP and the crypto alone allow), all measured in the same
// run on the same CPUs. Because
// other processes share these CPUs, the run also reports its CPU-time form: the receipts/s
// the CPU time per receipt (CA + load process + PostgreSQL backends) allows on every CPU,
// against the same for the crypto alone (the bound threads' own CPU time per receipt) —
// a ratio that other processes taking turns on the CPUs barely move.
// Goals (issue 3): >= 5,000 receipts/s and >= 0.5 of the crypto bound on SQLite.
//
//   npm run bench -- ca [--json] [--requests N] [--concurrency C] [--threads T] [--db sqlite|postgres|both] [--processes N] [--floor no] [--profile DIR] [--ca-node-args ARGS]
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { CaAdminClient, CaClient } from '../src/ca/client.js';
import { addEndorsementRoot, initCaDirectory, loadCaDirectory } from '../src/ca/directory.js';
import { sha256Digest } from '../src/protocol/digest.js';
import { SimNode } from '../test/ca/support/sim-node.js';
import { startCaProcess, type CaProcess } from '../test/ca/support/process.js';
import { scratchDatabase } from '../test/support/postgres.js';
import { tempDir } from '../test/support/system.js';
import { cryptoBound } from './ca/crypto-bound.js';
import { judgeAlone, leastCosts } from './ca/parts.js';
import { argChoice, argInteger, argValue } from './lib/args.js';
import type { LoadConfig, LoadResult } from './ca/load.js';
import type { BenchContext } from './lib/report.js';

const KERNEL = sha256Digest('bench kernel image');

/** CPU seconds (user + system) from a /proc stat line. */
function statSeconds(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  return statSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/**
 * CPU seconds of the CA process by kind of thread: `main` (HTTPS, fastify, messages), the
 * threads the CA names (`ca-judge`, `ca-commit`: src/ca/threads.ts), and `other` (V8's GC
 * and compiler helpers, libuv). Threads that ended meanwhile are not counted.
 */
function threadSeconds(pid: number): Map<string, number> {
  const by = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const kind = tid === String(pid) ? 'main' : comm.startsWith('ca-') ? comm : 'other';
      by.set(kind, (by.get(kind) ?? 0) + statSeconds(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')));
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return by;
}

async function runLoadProcess(configFile: string): Promise<LoadResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./ca/load.ts', import.meta.url).pathname, configFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`the load process failed (${code})`);
  return JSON.parse(out.trim().split('\n').pop() ?? '') as LoadResult;
}

/** CPU seconds of every process named `name` (e.g. the PostgreSQL server's), by pid. */
function processSeconds(name: string): Map<number, number> {
  const by = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === name) by.set(Number(entry), cpuSeconds(Number(entry)));
    } catch {
      // the process ended between the listing and the read
    }
  }
  return by;
}

/** The server processes (backends) connected to the database at `url` now. */
async function postgresBackends(url: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()');
    return rows.map((r) => r.pid);
  } finally {
    await client.end();
  }
}

/**
 * The transport floor (bench/ca/floor-server.ts): the same load against an HTTPS server
 * with the CA's TLS identity that only reads each request and writes a canned answer of
 * the real size.
 */
async function transportFloor(caDir: string, config: LoadConfig, configFile: string, opts: { crypto: boolean; processes: number }): Promise<{ result: LoadResult; serverCpuSeconds: number }> {
  const args = [new URL('./ca/floor-server.ts', import.meta.url).pathname, caDir, ...(opts.crypto ? ['--crypto'] : [])];
  const children = Array.from({ length: opts.processes }, () => spawn(process.execPath, ['--import', 'tsx', ...args], { stdio: ['ignore', 'pipe', 'inherit'] }));
  try {
    const urls = await Promise.all(
      children.map(
        (child) =>
          new Promise<string>((resolve, reject) => {
            let out = '';
            child.stdout.on('data', (d: Buffer) => {
              out += d.toString();
              if (out.includes('\n')) resolve((JSON.parse(out.split('\n')[0] ?? '') as { url: string }).url);
            });
            child.once('exit', (code) => reject(new Error(`the floor server exited (${code})`)));
          }),
      ),
    );
    writeFileSync(configFile, JSON.stringify({ ...config, url: urls[0] as string, moreUrls: urls.slice(1) } satisfies LoadConfig));
    const serverSeconds = (): number => children.reduce((sum, c) => sum + cpuSeconds(c.pid as number), 0);
    const before = serverSeconds();
    const result = await runLoadProcess(configFile);
    return { result, serverCpuSeconds: serverSeconds() - before };
  } finally {
    for (const child of children) child.kill('SIGTERM');
  }
}

interface Setup {
  /** The CA processes sharing the database (the first registered the node). */
  readonly cas: readonly CaProcess[];
  readonly config: LoadConfig;
  /** One valid evidence body, as the load process sends them, and what judging it needs. */
  readonly sampleEvidence: string;
  readonly sampleNode: Parameters<typeof judgeAlone>[1];
  dispose(): Promise<void>;
}

async function setUp(dir: string, db: string, threads: number, opts: { requests: number; concurrency: number; processes: number; nodeArgs: readonly string[] }): Promise<Setup> {
  const init = await initCaDirectory(join(dir, 'ca'));
  const node = await SimNode.create({ nodeId: 'bench-node', dir: join(dir, 'node') });
  writeFileSync(join(dir, 'manufacturer.pem'), node.manufacturerCa.pem);
  await addEndorsementRoot(join(dir, 'ca'), join(dir, 'manufacturer.pem'));
  const ca = await startCaProcess({ dir: join(dir, 'ca'), db, threads, nodeArgs: opts.nodeArgs });
  const root = (await loadCaDirectory(join(dir, 'ca'))).root.certificate;
  const admin = new CaAdminClient({ url: ca.url, root, token: init.adminToken });
  const client = new CaClient({ url: ca.url, root });
  await admin.addPlatform(node.platformReference('bench'));
  await admin.addAllowlist({ name: 'bench', kernel: KERNEL });
  const { token } = await admin.createToken();
  const challenge = await client.startRegistration(node.registrationRequest(token));
  await client.answerRegistration(challenge.registrationId, await node.answer(challenge));
  await admin.close();
  await client.close();
  const cas = [ca];
  for (let i = 1; i < opts.processes; i++) cas.push(await startCaProcess({ dir: join(dir, 'ca'), db, threads, nodeArgs: opts.nodeArgs }));
  const eventLog = node.eventLog;
  const sampleEvidence = JSON.stringify(await node.evidence(node.claims({ kernel: KERNEL })));
  const sampleNode = { id: node.nodeId, akPublic: node.ak.public, platform: { ...node.platformReference('bench'), createdAt: Date.now() }, kernel: KERNEL };
  await node.device.powerOff(); // the load process opens the same TPM state
  const config: LoadConfig = {
    url: ca.url,
    moreUrls: cas.slice(1).map((c) => c.url),
    rootPem: root.pem,
    statePath: node.statePath,
    ek: node.ekAlgorithm,
    nodeId: node.nodeId,
    kernel: KERNEL,
    eventLog,
    concurrency: opts.concurrency,
    warmupRequests: Math.min(5000, Math.ceil(opts.requests / 5)),
    requests: opts.requests,
  };
  return {
    cas,
    config,
    sampleEvidence,
    sampleNode,
    dispose: async () => {
      for (const c of cas) await c.stop();
      await node.dispose();
    },
  };
}

/** A fresh PostgreSQL database for one run, dropped afterwards; undefined when no server is configured. */
async function postgresDatabase(): Promise<{ url: string; drop: () => Promise<void> } | undefined> {
  const base = process.env['TRUSTLAUNCH_BENCH_PG'] ?? process.env['TRUSTLAUNCH_TEST_PG'];
  if (base === undefined || base === '') return undefined;
  return scratchDatabase(base, { prefix: 'tl_bench_', applicationName: 'trustlaunch-bench-ca' });
}

export async function run(ctx: BenchContext): Promise<void> {
  const requests = argInteger(ctx.args, '--requests', 40_000);
  const concurrency = argInteger(ctx.args, '--concurrency', 64);
  const cpus = availableParallelism();
  const threads = argInteger(ctx.args, '--threads', cpus, 0);
  // --processes N: N `ca serve` processes on the one database, connections spread over them.
  const processes = argInteger(ctx.args, '--processes', 1);
  const which = argChoice(ctx.args, '--db', ['sqlite', 'postgres', 'both'], 'both');
  // --floor no: skip the transport floor and the ceiling (measured once, with the first database's node)
  let floor = argChoice(ctx.args, '--floor', ['yes', 'no'], 'yes') === 'yes';
  // --profile DIR: the CA process writes V8 CPU profiles (every thread) to DIR when it stops.
  // --ca-node-args "…": more node flags for the CA process (e.g. --perf-basic-prof for perf).
  const profile = argValue(ctx.args, '--profile') ?? '';
  const nodeArgs = [...(profile === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', profile]), ...(argValue(ctx.args, '--ca-node-args') ?? '').split(' ').filter(Boolean)];

  const targets: Array<{ name: 'sqlite' | 'postgres'; open: (dir: string) => Promise<{ url: string; drop: () => Promise<void> } | undefined> }> = [];
  if (which !== 'postgres') targets.push({ name: 'sqlite', open: (dir) => Promise.resolve({ url: `sqlite:${join(dir, 'ca.db')}`, drop: () => Promise.resolve() }) });
  if (which !== 'sqlite') targets.push({ name: 'postgres', open: () => postgresDatabase() });

  for (const target of targets) {
    const tmp = tempDir('tl-bench-ca-');
    const database = await target.open(tmp.path);
    if (database === undefined) {
      process.stderr.write('ca bench: no PostgreSQL configured (TRUSTLAUNCH_BENCH_PG or TRUSTLAUNCH_TEST_PG); skipping the PostgreSQL figure\n');
      tmp.dispose();
      continue;
    }
    const setup = await setUp(tmp.path, database.url, threads, { requests, concurrency, processes, nodeArgs });
    const label = `[${target.name}]`;
    try {
      const configFile = join(tmp.path, 'load.json');
      writeFileSync(configFile, JSON.stringify(setup.config));
      const boundBefore = await cryptoBound(cpus, 2000);
      const pids = setup.cas.map((c) => c.child.pid as number);
      const caSeconds = (): number => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
      const caThreadSeconds = (): Map<string, number> => {
        const by = new Map<string, number>();
        for (const pid of pids) for (const [kind, s] of threadSeconds(pid)) by.set(kind, (by.get(kind) ?? 0) + s);
        return by;
      };
      const cpuBefore = caSeconds();
      const threadsBefore = caThreadSeconds();
      const postgresBefore = target.name === 'postgres' ? processSeconds('postgres') : new Map<number, number>();
      const result = await runLoadProcess(configFile);
      const caCpu = caSeconds() - cpuBefore;
      const threadsAfter = caThreadSeconds();
      const postgresCpu = target.name === 'postgres' ? (await postgresBackends(database.url)).reduce((sum, p) => sum + cpuSeconds(p) - (postgresBefore.get(p) ?? 0), 0) : 0;
      const boundAfter = await cryptoBound(cpus, 2000);
      if (result.failed > 0) throw new Error(`${result.failed} requests failed: ${result.firstFailure ?? ''}`);
      const bound = (boundBefore.perSecond + boundAfter.perSecond) / 2;
      const cryptoCpu = (boundBefore.cpuMicrosPerReceipt + boundAfter.cpuMicrosPerReceipt) / 2;
      const note = `${result.ok} receipts over HTTPS, ${concurrency} connections from a separate load process, CA with ${threads} judge threads on ${cpus} CPUs, ${target.name} durable commits; baseline: raw P-256 verify + ES256 sign + Ed25519 sign per receipt on ${cpus} threads (mean of ${Math.round(boundBefore.perSecond)} and ${Math.round(boundAfter.perSecond)}/s around the run)`;
      ctx.report({ bench: 'ca', metric: `receipts per second ${label}`, value: result.perSecond, unit: 'receipts/s', baseline: bound, note, goal: '>= 5000 receipts/s and ratio >= 0.5 (SQLite)' });
      ctx.report({ bench: 'ca', metric: `latency p50 ${label}`, value: result.p50Ms, unit: 'ms', baseline: null });
      ctx.report({ bench: 'ca', metric: `latency p99 ${label}`, value: result.p99Ms, unit: 'ms', baseline: null });
      // Where the time goes, in CPU-µs per receipt (warm-up included): the CA process by
      // thread, the PostgreSQL backends serving it, and the load process — all on the same CPUs.
      const all = result.requests + setup.config.warmupRequests;
      const perReceipt = (seconds: number): number => (seconds / all) * 1e6;
      ctx.report({ bench: 'ca', metric: `CA CPU per receipt ${label}`, value: perReceipt(caCpu), unit: 'µs', baseline: cryptoCpu, note: "baseline: the crypto alone per receipt (CPU-µs, the bound threads' own CPU time)" });
      for (const [kind, after] of [...threadsAfter].sort()) {
        ctx.report({ bench: 'ca', metric: `CA CPU per receipt, ${kind} thread(s) ${label}`, value: perReceipt(after - (threadsBefore.get(kind) ?? 0)), unit: 'µs', baseline: null });
      }
      if (target.name === 'postgres') ctx.report({ bench: 'ca', metric: `PostgreSQL server CPU per receipt ${label}`, value: perReceipt(postgresCpu), unit: 'µs', baseline: null, note: "the backends serving the CA's connections (WAL writer and checkpointer not counted)" });
      ctx.report({ bench: 'ca', metric: `load-process CPU per request ${label}`, value: perReceipt(result.driveCpuSeconds), unit: 'µs', baseline: null, note: 'the HTTPS client on the same machine (evidence generation excluded)' });
      // The CPU-time form of the ratio: what this run's CPU per receipt allows on every CPU
      // with nothing else running, against the same for the crypto alone.
      const runCpu = perReceipt(caCpu + result.driveCpuSeconds + postgresCpu);
      ctx.report({
        bench: 'ca',
        metric: `receipts per second the CPU time allows ${label}`,
        value: (cpus * 1e6) / runCpu,
        unit: 'receipts/s',
        baseline: (cpus * 1e6) / cryptoCpu,
        note: `${cpus} CPUs divided by the CPU-µs per receipt of the CA, the load process${target.name === 'postgres' ? ' and the PostgreSQL backends' : ''} (${runCpu.toFixed(0)} µs); baseline: the same for the crypto alone (${cryptoCpu.toFixed(1)} µs); the ratio is the crypto's share of the CPU a receipt costs`,
      });
      if (floor) {
        floor = false;
        const f = await transportFloor(join(tmp.path, 'ca'), { ...setup.config, moreUrls: [], requests: Math.min(requests, 20_000) }, configFile, { crypto: false, processes: 1 });
        const floorAll = f.result.requests + setup.config.warmupRequests;
        const note = 'the same load against an HTTPS server with the CA\'s TLS identity that only reads each request and writes a canned answer of the real size (bench/ca/floor-server.ts)';
        ctx.report({ bench: 'ca', metric: 'transport floor: requests per second', value: f.result.perSecond, unit: 'requests/s', baseline: null, note });
        ctx.report({ bench: 'ca', metric: 'transport floor: server CPU per request', value: (f.serverCpuSeconds / floorAll) * 1e6, unit: 'µs', baseline: null });
        ctx.report({ bench: 'ca', metric: 'transport floor: load-process CPU per request', value: (f.result.driveCpuSeconds / floorAll) * 1e6, unit: 'µs', baseline: null });
        // The ceiling: TLS, HTTP and the receipt's crypto alone, one server process per CPU.
        const ceilingBefore = await cryptoBound(cpus, 2000);
        const c = await transportFloor(join(tmp.path, 'ca'), { ...setup.config, moreUrls: [], requests: Math.min(requests, 20_000) }, configFile, { crypto: true, processes: cpus });
        const ceilingAfter = await cryptoBound(cpus, 2000);
        const ceilingAll = c.result.requests + setup.config.warmupRequests;
        ctx.report({
          bench: 'ca',
          metric: 'ceiling: transport and crypto alone, receipts per second',
          value: c.result.perSecond,
          unit: 'receipts/s',
          baseline: (ceilingBefore.perSecond + ceilingAfter.perSecond) / 2,
          note: `the same load against ${cpus} floor servers (bench/ca/floor-server.ts --crypto) that each do a receipt's crypto (P-256 verify, ES256 and Ed25519 signatures) on their one thread and answer the canned body: no parsing, judging, storage or thread messages; baseline: the crypto bound around it`,
        });
        ctx.report({ bench: 'ca', metric: 'ceiling: server CPU per receipt', value: (c.serverCpuSeconds / ceilingAll) * 1e6, unit: 'µs', baseline: null });
        ctx.report({ bench: 'ca', metric: 'ceiling: load-process CPU per request', value: (c.result.driveCpuSeconds / ceilingAll) * 1e6, unit: 'µs', baseline: null });
        const least = leastCosts(tmp.path, setup.sampleEvidence);
        ctx.report({ bench: 'ca', metric: 'least cost beyond the ceiling: JSON.parse of an evidence body', value: least.parseMicros, unit: 'µs', baseline: null, note: `${setup.sampleEvidence.length} bytes; one thread, best of 5 rounds (bench/ca/parts.ts)` });
        ctx.report({ bench: 'ca', metric: 'least cost beyond the ceiling: durable store per receipt', value: least.storeMicros, unit: 'µs', baseline: null, note: 'a bare receipt row and decision row, SQLite WAL synchronous=FULL, groups of 32; one thread, best of 4 rounds (bench/ca/parts.ts)' });
        const alone = judgeAlone(setup.sampleEvidence, setup.sampleNode);
        ctx.report({
          bench: 'ca',
          metric: "the CA's judge alone: CPU per receipt",
          value: alone.judgeMicros,
          unit: 'µs',
          baseline: alone.cryptoMicros,
          note: 'EvidenceJudge.judge on one thread of the bench process (the pipeline, the receipt and the host certificate); baseline: the crypto alone on the same thread; best of 5 alternating rounds (bench/ca/parts.ts)',
        });
      }
    } finally {
      await setup.dispose();
      await database.drop();
      tmp.dispose();
    }
  }
}
