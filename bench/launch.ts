// `npm run bench -- launch [--json] [--launches N] [--concurrent N]`
//
// The whole launch as a user sees it, on the embedded defaults (`trustlaunch up`: SQLite,
// software TPM, process VMs, the default guest), through the user client SDK:
//
// 1. N launches one after another (default 20, after 2 warm-ups each), interleaved with
//    the same launches on a second cloud whose nodes have attestation turned off (the
//    node's benchmark switch, docs/node.md) — same code, same manager settings, same run:
//      attested    `createVm`: request → the CA's receipt (long-poll) → every check →
//                  the endpoint presents the attested key → known_hosts written
//      unattested  request → the manager names the VM's SSH endpoint (in whatever state
//                  it reports: its `running` lags the node by its poll interval, a wait
//                  the attested client does not have either) → the SSH server there
//                  presents a host key (waited for as the client's endpoint check waits:
//                  scanHostKeys; trust on first use): the earliest moment an unattested
//                  user could log in
//    and then one `ssh … true` with StrictHostKeyChecking=yes in both. Reported: p50/p99
//    to the verified receipt and to the successful ssh command, each against the
//    unattested launch. Goal: verified launch within 1.1× of the unattested one.
// 2. 100 (--concurrent) creates issued at once across 4 nodes: every one verified, none
//    lost (100 distinct VMs, 100 known_hosts entries), and the throughput — against the
//    same 100 unattested launches (each until its SSH server answers).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { TrustlaunchClient } from '../src/client/client.js';
import type { LaunchTimings } from '../src/client/create.js';
import type { ManagerApi, ManagerVm } from '../src/client/manager-api.js';
import { knownAliases } from '../src/client/known-hosts.js';
import { clientPaths } from '../src/client/paths.js';
import { trustCa } from '../src/client/pinned-ca.js';
import { scanHostKeys } from '../src/client/ssh-endpoint.js';
import { up, type RunningCluster } from '../src/cluster/up.js';
import { newNonce } from '../src/protocol/nonce.js';
import { exec } from '../test/support/exec.js';
import { argInteger } from './lib/args.js';
import { percentile, type BenchContext } from './lib/report.js';

const NODES = 4;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The machine's 1-minute load average: the figures mean little when others' work shares the cores. */
const load = (): string => `load average ${loadavg()[0]?.toFixed(1) ?? '?'}`;

/** Up to three distinct failure messages, for a note. */
function failuresOf(results: readonly PromiseSettledResult<unknown>[]): string {
  const messages = results.flatMap((r) => (r.status === 'rejected' ? [r.reason instanceof Error ? r.reason.message : String(r.reason)] : []));
  return messages.length === 0 ? 'none' : `${messages.length}: ${[...new Set(messages)].slice(0, 3).join(' | ')}`;
}

interface Clouds {
  readonly tmp: string;
  readonly on: RunningCluster;
  readonly off: RunningCluster;
  readonly client: TrustlaunchClient;
  /** The same user API on the unattested cloud (its manager, its token). */
  readonly offClient: TrustlaunchClient;
  readonly keyFile: string;
}

async function start(): Promise<Clouds> {
  const tmp = mkdtempSync(join(tmpdir(), 'tl-bench-launch-'));
  // 32 MiB per VM in the manager's books, so 25+ VMs fit on each node.
  const settings = { vmMemoryMiB: 32 };
  const on = await up({ dir: join(tmp, 'on'), nodes: NODES, managerSettings: settings });
  const off = await up({ dir: join(tmp, 'off'), nodes: NODES, attestation: 'off', managerSettings: settings });
  const keyFile = join(tmp, 'id_ed25519');
  const keygen = await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench', '-f', keyFile]);
  if (keygen.status !== 0) throw new Error(`ssh-keygen: ${keygen.stderr}`);
  const open = async (c: RunningCluster, name: string): Promise<TrustlaunchClient> => {
    const paths = clientPaths(join(tmp, name));
    // The unattested cloud has a CA too (its nodes never talk to it): pinning it lets the same SDK talk to its manager.
    await trustCa({ paths, url: c.summary.ca.url, fingerprint: c.summary.ca.fingerprint });
    return TrustlaunchClient.open({ configDir: paths.dir, manager: { url: c.manager.url, token: c.userToken, ca: c.manager.caCertificate }, sshKey: `${keyFile}.pub` });
  };
  return { tmp, on, off, client: await open(on, 'user-on'), offClient: await open(off, 'user-off'), keyFile };
}

/** An unattested launch: request, then the endpoint the manager names and an SSH server there that presents a key. */
async function unattested(manager: ManagerApi, publicKey: string, deadline: number): Promise<{ vm: ManagerVm; hostKey: string; ms: number; stages: UnattestedStages }> {
  const t0 = performance.now();
  const created = await manager.createVm({ image: 'guest', nonce: newNonce(), sshPublicKey: publicKey });
  const scheduled = performance.now() - t0;
  let endpoint: number | undefined;
  for (;;) {
    const vm = await manager.getVm(created.vmId);
    if (vm.state === 'failed') throw new Error(`unattested VM ${vm.vmId} failed: ${JSON.stringify(vm.reason)}`);
    const ssh = vm.nodeReport?.ssh;
    if (ssh !== undefined && vm.state !== 'stopping' && vm.state !== 'stopped') {
      endpoint ??= performance.now() - t0;
      // The same wait for the SSH server as the attested client's endpoint check.
      const [key] = await scanHostKeys(ssh, Math.min(deadline, Date.now() + 10_000), undefined, ['ed25519']);
      const ms = performance.now() - t0;
      if (key !== undefined) return { vm, hostKey: key, ms, stages: { scheduled, endpoint, key: ms } };
    }
    if (Date.now() > deadline) throw new Error(`unattested VM ${vm.vmId} not up (state ${vm.state})`);
    await sleep(20);
  }
}

/** When the unattested launch got each answer, in ms from the request. */
interface UnattestedStages {
  readonly scheduled: number;
  /** The manager first named the VM's SSH endpoint. */
  readonly endpoint: number;
  /** The SSH server there presented a key. */
  readonly key: number;
}

/** Medians of each field, for a note: `name 12 ms, …`. */
function medians<T extends object>(rows: readonly T[]): string {
  const first = rows[0];
  if (first === undefined) return '-';
  return Object.keys(first)
    .map((k) => `${k} ${Math.round(percentile(rows.map((r) => (r as Record<string, number>)[k] ?? NaN), 50))}`)
    .join(', ');
}

/** One `ssh … true`, strict, against a known_hosts file. */
async function sshTrue(argv: readonly string[]): Promise<void> {
  const r = await exec('ssh', [...argv, 'true']);
  if (r.status !== 0) throw new Error(`ssh failed (${r.status}): ${r.stderr}`);
}

function unattestedSshArgv(vm: ManagerVm, hostKey: string, dir: string, keyFile: string): string[] {
  const file = join(dir, `known_hosts.${vm.vmId}`);
  writeFileSync(file, `${vm.vmId} ${hostKey}\n`); // trust on first use: what a user without attestation has
  const ssh = vm.nodeReport?.ssh as { host: string; port: number };
  return ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${file}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', `HostKeyAlias=${vm.vmId}`, '-o', 'IdentitiesOnly=yes', '-i', keyFile, '-p', String(ssh.port), '-l', userInfo().username, ssh.host];
}

async function removeAll(manager: ManagerApi, ids: readonly string[]): Promise<void> {
  await Promise.all(ids.map((id) => manager.deleteVm(id).catch(() => undefined)));
}

async function sequential(ctx: BenchContext, c: Clouds, launches: number): Promise<void> {
  const receipt: number[] = [];
  const ready: number[] = [];
  const sshOn: number[] = [];
  const sshOff: number[] = [];
  const stagesOn: LaunchTimings[] = [];
  const stagesOff: UnattestedStages[] = [];
  const publicKey = (await c.client.loginKey()).publicKey;
  const loadBefore = load();
  for (let i = 0; i < launches + 2; i++) {
    const deadline = Date.now() + 120_000;
    // attested
    const t0 = performance.now();
    const created = await c.client.createVm({ image: 'guest' });
    const tReceipt = created.timings.done;
    const { argv } = await c.client.sshArguments(created.vm.vmId, { extraOptions: ['BatchMode=yes'] });
    await sshTrue(argv);
    const tSshOn = performance.now() - t0;
    // unattested
    const t1 = performance.now();
    const plain = await unattested(c.offClient.manager, publicKey, deadline);
    await sshTrue(unattestedSshArgv(plain.vm, plain.hostKey, c.tmp, c.keyFile));
    const tSshOff = performance.now() - t1;
    if (i >= 2) {
      receipt.push(tReceipt);
      ready.push(plain.ms);
      sshOn.push(tSshOn);
      sshOff.push(tSshOff);
      stagesOn.push(created.timings);
      stagesOff.push(plain.stages);
    }
    await c.client.removeVm(created.vm.vmId);
    await removeAll(c.offClient.manager, [plain.vm.vmId]);
  }
  const note = `${launches} sequential launches of the default process guest on ${NODES}-node clouds (SQLite, software TPM); baseline: the same launch on nodes with attestation off (to the SSH server at the endpoint the manager names presenting a key, trust on first use), interleaved; ${loadBefore} before, ${load()} after`;
  const stages = `medians in ms from the request: attested ${medians(stagesOn)}; unattested ${medians(stagesOff)}`;
  for (const p of [50, 99]) {
    ctx.report({ bench: 'launch', metric: `verified-receipt-p${p}`, value: percentile(receipt, p), unit: 'ms', baseline: percentile(ready, p), note: `${note}; ${stages}`, goal: 'ratio <= 1.1' });
  }
  for (const p of [50, 99]) {
    ctx.report({ bench: 'launch', metric: `ssh-command-p${p}`, value: percentile(sshOn, p), unit: 'ms', baseline: percentile(sshOff, p), note: `${note}; to the first successful \`ssh … true\` (StrictHostKeyChecking=yes)`, goal: 'ratio <= 1.1' });
  }
}

async function concurrent(ctx: BenchContext, c: Clouds, count: number): Promise<void> {
  const publicKey = (await c.client.loginKey()).publicKey;
  // attested: every create through the SDK at once
  const loadBefore = load();
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: count }, () => c.client.createVm({ image: 'guest', timeoutMs: 300_000 })));
  const wallOn = performance.now() - t0;
  const verified = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const ids = new Set(verified.map((v) => v.vm.vmId));
  const aliases = await knownAliases(c.client.paths.knownHosts);
  const lost = count - [...ids].filter((id) => aliases.has(id)).length;
  const placed = new Set(verified.map((v) => v.launch.claims.node));
  await removeAll(c.client.manager, [...ids]);

  // unattested: the same creates at once, each until its SSH server answers
  const deadline = Date.now() + 300_000;
  const t1 = performance.now();
  const plain = await Promise.allSettled(Array.from({ length: count }, () => unattested(c.offClient.manager, publicKey, deadline)));
  const wallOff = performance.now() - t1;
  const plainOk = plain.flatMap((r) => (r.status === 'fulfilled' ? [r.value.vm.vmId] : []));
  await removeAll(c.offClient.manager, plainOk);

  const note = `${count} creates issued at once across ${NODES} nodes; baseline: the same on nodes with attestation off (each until its SSH server answers); ${loadBefore} before, ${load()} after`;
  ctx.report({ bench: 'launch', metric: `concurrent-${count}-verified`, value: verified.length, unit: 'VMs', baseline: plainOk.length, note: `${note}; failures: ${failuresOf(results)}; baseline failures: ${failuresOf(plain)}`, goal: `${count} of ${count}` });
  ctx.report({ bench: 'launch', metric: `concurrent-${count}-lost`, value: lost, unit: 'VMs', baseline: null, note: `VMs verified but missing from known_hosts, or answered twice; spread over ${placed.size} node(s)`, goal: '0' });
  ctx.report({ bench: 'launch', metric: `concurrent-${count}-wall`, value: wallOn, unit: 'ms', baseline: wallOff, note });
  ctx.report({ bench: 'launch', metric: `concurrent-${count}-throughput`, value: (verified.length * 1000) / wallOn, unit: 'VMs/s', baseline: (plainOk.length * 1000) / wallOff, note });
}

export async function run(ctx: BenchContext): Promise<void> {
  const launches = argInteger(ctx.args, '--launches', 20);
  const count = argInteger(ctx.args, '--concurrent', 100);
  const c = await start();
  try {
    await sequential(ctx, c, launches);
    await concurrent(ctx, c, count);
  } finally {
    await c.client.close();
    await c.offClient.close();
    await c.on.stop();
    await c.off.stop();
    rmSync(c.tmp, { recursive: true, force: true });
  }
}
