// `vm create` (DESIGN.md §4.2, the user's side): a fresh nonce, the request to the
// manager, the receipt fetched from the CA by that nonce, the verification pipeline
// (verify.ts), the endpoint check, and only then the VM's lines in known_hosts.
//
// While the client long-polls the CA it also follows the manager's view of the VM, but
// only as a hint — for the stages it shows and to stop waiting early: a manager can make
// the client give up (it can refuse service anyway), never make it trust. Early ends:
//   - the manager says it launched the VM with another nonce      NONCE_MISMATCH
//   - the manager says the VM failed and the CA has no receipt     LAUNCH_FAILED
//   - the manager says the VM runs, and still no receipt for this
//     nonce at the CA after a grace period (a receipt is stored
//     before the node hears the CA's answer)                       NONCE_MISMATCH
//   - the overall deadline                                         TIMEOUT
import type { Digest } from '../protocol/digest.js';
import { isTrustlaunchError, TrustlaunchError } from '../protocol/errors.js';
import { newNonce, type Nonce } from '../protocol/nonce.js';
import type { CaReceipt, CaReceipts } from './ca-receipts.js';
import { addKnownHost, removeKnownHost } from './known-hosts.js';
import type { ManagerApi, ManagerVm } from './manager-api.js';
import type { ClientPaths } from './paths.js';
import type { TrustedCa } from './pinned-ca.js';
import { removeVmRecord, writeVmRecord, type VmRecord } from './records.js';
import { checkEndpoint, checkPresentedKeys, scanHostKeys, scanTypeOf, type SshEndpoint } from './ssh-endpoint.js';
import type { LoginKey } from './ssh-key.js';
import { verifyLaunch, type VerifiedLaunch } from './verify.js';

/** What `vm create` shows: the manager's stages (hints), then the CA's receipt and the verdict. */
export type LaunchStage = 'requested' | 'scheduled' | 'booting' | 'attesting' | 'receipt' | 'verified';

export interface CreateVmRequest {
  /** An image name or digest known to the manager. */
  readonly image: string;
  readonly name?: string;
  /** `--expect-kernel`: the receipt must attest exactly this kernel digest. */
  readonly expectKernel?: Digest;
  /** Overall deadline for the receipt (default 180 s). */
  readonly timeoutMs?: number;
  /** Check the host key the VM's SSH server presents (default true). */
  readonly probe?: boolean;
  readonly onStage?: (stage: LaunchStage, vm: ManagerVm | undefined) => void;
}

export interface LaunchTimings {
  /** Milliseconds from the start of `createVm` to the manager's answer. */
  readonly scheduled: number;
  /** … to the receipt from the CA. */
  readonly receipt: number;
  /** … to the end of every check, before the files are written. */
  readonly verified: number;
  /** … to the files written: the end. */
  readonly done: number;
}

export interface CreatedVm {
  /** The manager's last view of the VM (untrusted). */
  readonly vm: ManagerVm;
  readonly nonce: Nonce;
  readonly launch: VerifiedLaunch;
  readonly record: VmRecord;
  /** Where the manager says the VM's sshd listens, when it said so. */
  readonly endpoint: SshEndpoint | undefined;
  /** Whether the endpoint answered with the attested key (false: it was not probed or did not answer). */
  readonly probed: boolean;
  readonly timings: LaunchTimings;
}

export interface LaunchDeps {
  readonly paths: ClientPaths;
  readonly ca: TrustedCa;
  readonly receipts: CaReceipts;
  readonly manager: ManagerApi;
  readonly loginKey: LoginKey;
  /** Interval of the manager's hints for the first ten looks, then doubling to 1 s (default 50 ms). */
  readonly managerPollMs?: number;
  /** How long a VM the manager calls running may lack a receipt (default 5 s). */
  readonly graceMs?: number;
}

const DEFAULT_TIMEOUT_MS = 180_000;
const PROBE_MS = 10_000;

type Hint =
  | { readonly kind: 'failed'; readonly vm: ManagerVm }
  | { readonly kind: 'running-without-receipt'; readonly vm: ManagerVm }
  | { readonly kind: 'nonce-changed'; readonly vm: ManagerVm };

export async function createVm(deps: LaunchDeps, req: CreateVmRequest): Promise<CreatedVm> {
  // Host key scans run until the launch is decided either way, then stop.
  const scanning = new AbortController();
  try {
    return await launchAndVerify(deps, req, scanning.signal);
  } finally {
    scanning.abort();
  }
}

async function launchAndVerify(deps: LaunchDeps, req: CreateVmRequest, scanning: AbortSignal): Promise<CreatedVm> {
  const t0 = performance.now();
  const since = (): number => performance.now() - t0;
  const deadline = Date.now() + (req.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const stage = req.onStage ?? (() => undefined);
  const nonce = newNonce();

  stage('requested', undefined);
  let vm = await deps.manager.createVm({
    image: req.image,
    nonce,
    ...(req.name === undefined ? {} : { name: req.name }),
    sshPublicKey: deps.loginKey.publicKey,
  });
  if (vm.nonce !== nonce) throw nonceChanged(vm);
  const scheduled = since();
  stage('scheduled', vm);

  // The receipt from the CA, while the manager's view runs alongside as a hint — and, once
  // it names the VM's SSH endpoint, the endpoint's host keys are read ahead (compared only
  // after the receipt has been verified), so the endpoint check costs no extra wait.
  const stop = new AbortController();
  const scans = new Map<string, Promise<string[]>>();
  const scanKey = (e: SshEndpoint): string => `${e.host}:${e.port}`;
  let latest = vm;
  const onView = (v: ManagerVm): void => {
    latest = v;
    const endpoint = endpointOf(v);
    if (req.probe === false || endpoint === undefined || scans.has(scanKey(endpoint))) return;
    // Ed25519 is what guests generate; another type is asked for after the receipt names it.
    scans.set(scanKey(endpoint), scanHostKeys(endpoint, Date.now() + PROBE_MS, scanning, ['ed25519']));
  };
  let found: CaReceipt | undefined;
  try {
    const outcome = await Promise.race([
      deps.receipts.waitFor(nonce, deadline, stop.signal).then((r) => ({ kind: 'receipt' as const, receipt: r })),
      watchManager(deps, vm, nonce, stop.signal, stage, onView).then((hint) => ({ kind: 'hint' as const, hint })),
    ]);
    if (outcome.kind === 'receipt') {
      found = outcome.receipt;
      vm = latest; // the manager's newest view (its endpoint, its node): still only a hint
    } else if (outcome.hint !== undefined) {
      vm = outcome.hint.vm;
      found = await deps.receipts.lookup(nonce, 0); // one last look: the CA's word outranks the hint
      if (found === undefined) throw hintError(outcome.hint, deps.graceMs ?? 5000);
    }
  } finally {
    stop.abort();
  }
  if (found === undefined) {
    throw new TrustlaunchError('TIMEOUT', `the CA issued no receipt for this launch's nonce within ${Math.round((req.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000)} s (VM ${vm.vmId}; the manager last said ${vm.state})`, {
      detail: { check: 'receipt', vmId: vm.vmId },
    });
  }
  const receiptAt = since();
  stage('receipt', vm);

  const launch = await verifyLaunch(deps.ca, found, {
    nonce,
    vmId: vm.vmId,
    ...(req.expectKernel === undefined ? {} : { kernel: req.expectKernel }),
    authorizedKey: deps.loginKey.publicKey,
    requireHostCertificate: true,
  });

  // The endpoint check: the server where the manager says the VM is must present the attested key.
  if (vm.nodeReport?.ssh === undefined) vm = await deps.manager.getVm(vm.vmId).catch(() => vm);
  const endpoint = vm.nodeReport?.ssh === undefined ? undefined : checkEndpoint(vm.nodeReport.ssh);
  let probed = false;
  if (endpoint !== undefined && req.probe !== false) {
    const type = scanTypeOf(launch.hostKey);
    const early = type === 'ed25519' ? await (scans.get(scanKey(endpoint)) ?? Promise.resolve([])) : [];
    const presented = early.length > 0 ? early : await scanHostKeys(endpoint, Date.now() + PROBE_MS, undefined, [type]);
    probed = checkPresentedKeys(endpoint, presented, launch.hostKey).answered;
  }
  const verifiedAt = since();

  const record: VmRecord = {
    v: 1,
    vmId: vm.vmId,
    name: vm.name,
    manager: deps.manager.url,
    ca: deps.ca.fingerprint,
    nonce,
    image: req.image,
    ...(req.expectKernel === undefined ? {} : { expectKernel: req.expectKernel }),
    receipt: found.receipt,
    hostCertificate: launch.hostCertificate as string,
    loginKey: {
      publicKey: deps.loginKey.publicKey,
      publicKeyFile: deps.loginKey.publicKeyFile,
      ...(deps.loginKey.privateKeyFile === undefined ? {} : { privateKeyFile: deps.loginKey.privateKeyFile }),
    },
    createdAt: vm.createdAt ?? new Date().toISOString(),
    verifiedAt: new Date().toISOString(),
  };
  await persist(deps, record, launch);
  stage('verified', vm);
  return { vm, nonce, launch, record, endpoint, probed, timings: { scheduled, receipt: receiptAt, verified: verifiedAt, done: since() } };
}

/** The record, then the known_hosts lines; if the second write fails the first is undone. */
async function persist(deps: LaunchDeps, record: VmRecord, launch: VerifiedLaunch): Promise<void> {
  await writeVmRecord(deps.paths, record);
  try {
    await addKnownHost(deps.paths.knownHosts, {
      alias: record.vmId,
      hostKey: launch.hostKey,
      sshCaKey: deps.ca.sshCaKeyLine,
      comment: `${record.name}: receipt ${launch.claims.jti} from ${deps.ca.issuer}, verified ${record.verifiedAt}`,
    });
  } catch (e) {
    await removeVmRecord(deps.paths, record.vmId).catch(() => undefined);
    await removeKnownHost(deps.paths.knownHosts, record.vmId).catch(() => undefined);
    throw e;
  }
}

/** The SSH endpoint a view names, when it names a usable one (a bad one is refused later, at the check). */
function endpointOf(vm: ManagerVm): SshEndpoint | undefined {
  if (vm.nodeReport?.ssh === undefined) return undefined;
  try {
    return checkEndpoint(vm.nodeReport.ssh);
  } catch {
    return undefined;
  }
}

/** Follows the manager's view until it calls for an early end (or `signal` aborts: undefined). */
async function watchManager(
  deps: LaunchDeps,
  first: ManagerVm,
  nonce: Nonce,
  signal: AbortSignal,
  stage: (s: LaunchStage, vm: ManagerVm) => void,
  onView: (vm: ManagerVm) => void,
): Promise<Hint | undefined> {
  const grace = deps.graceMs ?? 5000;
  const base = deps.managerPollMs ?? 50;
  let interval = base;
  let polls = 0;
  let shown = 'scheduled';
  let runningSince: number | undefined;
  while (!signal.aborted) {
    await sleep(interval, signal);
    // Often while a launch usually completes (about a second), then less and less.
    if (++polls >= 10) interval = Math.min(interval * 2, 1000);
    if (signal.aborted) return undefined;
    let vm: ManagerVm;
    try {
      vm = await deps.manager.getVm(first.vmId, signal);
    } catch (e) {
      if (signal.aborted) return undefined;
      if (isTrustlaunchError(e, 'NOT_FOUND')) return { kind: 'failed', vm: { ...first, state: 'failed', reason: { code: 'NOT_FOUND', message: 'the manager no longer knows this VM' } } };
      continue; // an unreachable manager is no reason to stop waiting for the CA
    }
    if (vm.vmId !== first.vmId) continue;
    if (vm.nonce !== nonce) return { kind: 'nonce-changed', vm };
    onView(vm);
    if ((vm.state === 'booting' || vm.state === 'attesting') && vm.state !== shown) {
      shown = vm.state;
      stage(vm.state, vm);
    }
    if (vm.state === 'failed' || vm.state === 'stopped' || vm.state === 'stopping') return { kind: 'failed', vm };
    if (vm.state === 'running') {
      runningSince ??= Date.now();
      if (Date.now() - runningSince >= grace) return { kind: 'running-without-receipt', vm };
      interval = Math.min(interval, 250);
    }
  }
  return undefined;
}

function nonceChanged(vm: ManagerVm): TrustlaunchError {
  return new TrustlaunchError('NONCE_MISMATCH', `the manager launched VM ${vm.vmId} with another nonce than the one this client sent: whatever it attests is not bound to this request`, {
    detail: { check: 'nonce', vmId: vm.vmId },
  });
}

function hintError(hint: Hint, graceMs: number): TrustlaunchError {
  const vm = hint.vm;
  switch (hint.kind) {
    case 'nonce-changed':
      return nonceChanged(vm);
    case 'running-without-receipt':
      return new TrustlaunchError(
        'NONCE_MISMATCH',
        `the manager reports VM ${vm.vmId} running, but ${Math.round(graceMs / 1000)} s later the CA still holds no receipt bound to the nonce this client sent: the VM was attested with another nonce, or not at all`,
        { detail: { check: 'nonce', vmId: vm.vmId } },
      );
    case 'failed':
      return new TrustlaunchError('LAUNCH_FAILED', `the launch of VM ${vm.vmId} failed before the CA judged it; the manager says: ${vm.reason?.code ?? vm.state}${vm.reason === null || vm.reason === undefined ? '' : ` (${vm.reason.message})`}`, {
        detail: { check: 'receipt', vmId: vm.vmId, managerSays: vm.reason ?? { state: vm.state } },
      });
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
