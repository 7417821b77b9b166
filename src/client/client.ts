// The user client SDK (docs/client.md): everything `trustlaunch vm …` does, as a library.
//
//   const client = await TrustlaunchClient.open({ configDir, manager: { url, token, ca } });
//   const vm = await client.createVm({ image: 'guest', onStage: (s) => console.log(s) });
//   const argv = await client.sshArguments(vm.vm.name, { command: ['uname', '-a'] });
//   await client.close();
//
// It trusts the pinned CA and nothing else: the manager is asked to do things and to say
// where a VM is; whether a VM is trusted is decided from the CA's receipt alone.
import { userInfo } from 'node:os';
import type { Dispatcher } from 'undici';
import { isTrustlaunchError, TrustlaunchError } from '../protocol/errors.js';
import type { Nonce } from '../protocol/nonce.js';
import { CaReceipts } from './ca-receipts.js';
import { createVm, type CreateVmRequest, type CreatedVm } from './create.js';
import { knownAliases, removeKnownHost } from './known-hosts.js';
import { ManagerApi, type ManagerConnection, type ManagerVm } from './manager-api.js';
import { clientPaths, configDir, type ClientPaths } from './paths.js';
import { loadPinnedCa, type TrustedCa } from './pinned-ca.js';
import { listVmRecords, readVmRecord, removeVmRecord, type VmRecord } from './records.js';
import { checkEndpoint, sshArguments } from './ssh-endpoint.js';
import { resolveLoginKey, type LoginKey } from './ssh-key.js';
import { verifyLaunch, type VerifiedLaunch } from './verify.js';
import type { Digest } from '../protocol/digest.js';

export interface OpenClientOptions {
  /** The config directory (default: configDir(): TRUSTLAUNCH_CONFIG_DIR, XDG, ~/.config/trustlaunch). */
  readonly configDir?: string;
  readonly manager: ManagerConnection;
  /** The login key's public half (`--ssh-key`); default: see ssh-key.ts. */
  readonly sshKey?: string;
  /** A dispatcher pinned to the CA to share between clients (benchmarks). */
  readonly caAgent?: Dispatcher;
  /** Manager hint polling and grace (create.ts LaunchDeps). */
  readonly managerPollMs?: number;
  readonly graceMs?: number;
}

/** A VM as listed: the manager's view, and whether this client verified it. */
export interface ListedVm {
  readonly vm: ManagerVm;
  /** This client holds a record and known_hosts lines for it. */
  readonly verified: boolean;
}

export interface ReceiptCheck {
  readonly vmId: string;
  readonly name: string;
  readonly receipt: string;
  readonly hostCertificate: string | undefined;
  readonly launch: VerifiedLaunch;
  /** Where the nonce came from: this client's record, or (for a VM created elsewhere) the manager — then freshness is not shown. */
  readonly nonceSource: 'record' | 'manager';
  /** The CA's copy differs from the one recorded at create time (it should never). */
  readonly changedSinceCreate: boolean;
}

export class TrustlaunchClient {
  readonly paths: ClientPaths;
  readonly ca: TrustedCa;
  readonly manager: ManagerApi;
  readonly receipts: CaReceipts;
  readonly #o: OpenClientOptions;
  #loginKey: Promise<LoginKey> | undefined;

  private constructor(o: OpenClientOptions, paths: ClientPaths, ca: TrustedCa) {
    this.#o = o;
    this.paths = paths;
    this.ca = ca;
    this.manager = new ManagerApi(o.manager);
    this.receipts = new CaReceipts(ca, o.caAgent);
  }

  /** Opens the client; CA_NOT_PINNED when `ca trust` was never run for this config directory. */
  static async open(o: OpenClientOptions): Promise<TrustlaunchClient> {
    const paths = clientPaths(o.configDir ?? configDir());
    const ca = await loadPinnedCa(paths);
    return new TrustlaunchClient(o, paths, ca);
  }

  /** The login key the VMs are asked to authorize (resolved once; may generate one). */
  loginKey(): Promise<LoginKey> {
    return (this.#loginKey ??= resolveLoginKey({ paths: this.paths, flag: this.#o.sshKey }));
  }

  async createVm(req: CreateVmRequest): Promise<CreatedVm> {
    return createVm(
      {
        paths: this.paths,
        ca: this.ca,
        receipts: this.receipts,
        manager: this.manager,
        loginKey: await this.loginKey(),
        ...(this.#o.managerPollMs === undefined ? {} : { managerPollMs: this.#o.managerPollMs }),
        ...(this.#o.graceMs === undefined ? {} : { graceMs: this.#o.graceMs }),
      },
      req,
    );
  }

  async listVms(): Promise<ListedVm[]> {
    const [vms, records, aliases] = await Promise.all([this.manager.listVms(), listVmRecords(this.paths), knownAliases(this.paths.knownHosts)]);
    return vms.map((vm) => ({ vm, verified: records.has(vm.vmId) && aliases.has(vm.vmId) }));
  }

  async showVm(ref: string): Promise<{ vm: ManagerVm; record: VmRecord | undefined; verified: boolean }> {
    const vm = await this.manager.getVm(ref);
    const record = await readVmRecord(this.paths, vm.vmId);
    return { vm, record, verified: record !== undefined && (await knownAliases(this.paths.knownHosts)).has(vm.vmId) };
  }

  /** Deletes the VM at the manager and forgets it here (record and known_hosts lines). */
  async removeVm(ref: string): Promise<{ vmId: string; forgotten: boolean }> {
    let vmId: string | undefined;
    try {
      vmId = (await this.manager.getVm(ref)).vmId;
    } catch (e) {
      if (!isTrustlaunchError(e, 'NOT_FOUND')) throw e;
      vmId = (await this.#recordByRef(ref))?.vmId;
      if (vmId === undefined) throw e;
    }
    await this.manager.deleteVm(vmId).catch((e: unknown) => {
      if (!isTrustlaunchError(e, 'NOT_FOUND')) throw e;
    });
    const hadRecord = (await readVmRecord(this.paths, vmId)) !== undefined;
    await removeVmRecord(this.paths, vmId);
    const hadLines = await removeKnownHost(this.paths.knownHosts, vmId);
    return { vmId, forgotten: hadRecord || hadLines };
  }

  /**
   * The VM's receipt, fetched again from the CA and verified again. For a VM this client
   * created, with the nonce it chose and its login key; for another, with the nonce the
   * manager reports (so the receipt proves what runs, but not that this client asked).
   */
  async checkReceipt(ref: string, expectKernel?: Digest): Promise<ReceiptCheck> {
    let vm: ManagerVm | undefined;
    try {
      vm = await this.manager.getVm(ref);
    } catch (e) {
      if (!isTrustlaunchError(e)) throw e;
      if (e.kind !== 'transport' && e.code !== 'NOT_FOUND') throw e;
    }
    const record = vm === undefined ? await this.#recordByRef(ref) : await readVmRecord(this.paths, vm.vmId);
    if (vm === undefined && record === undefined) throw new TrustlaunchError('NOT_FOUND', `no VM ${ref} at the manager, and no record of it in ${this.paths.vms}`);
    const vmId = record?.vmId ?? (vm as ManagerVm).vmId;
    const nonce = (record?.nonce ?? (vm as ManagerVm).nonce) as Nonce;
    const fromCa = await this.receipts.lookup(nonce, 0);
    const bundle = fromCa ?? (record === undefined ? undefined : { receipt: record.receipt, hostCertificate: record.hostCertificate });
    if (bundle === undefined) throw new TrustlaunchError('NOT_FOUND', `the CA holds no receipt for VM ${vmId}'s nonce`, { detail: { check: 'receipt' } });
    const kernel = expectKernel ?? (record?.expectKernel as Digest | undefined);
    const launch = await verifyLaunch(this.ca, bundle, {
      nonce,
      vmId,
      ...(kernel === undefined ? {} : { kernel }),
      ...(record === undefined ? {} : { authorizedKey: record.loginKey.publicKey }),
      requireHostCertificate: true,
    });
    return {
      vmId,
      name: record?.name ?? (vm as ManagerVm).name,
      receipt: bundle.receipt,
      hostCertificate: bundle.hostCertificate,
      launch,
      nonceSource: record === undefined ? 'manager' : 'record',
      changedSinceCreate: record !== undefined && fromCa !== undefined && (fromCa.receipt !== record.receipt || fromCa.hostCertificate !== record.hostCertificate),
    };
  }

  /** The `ssh` arguments for a verified VM (NOT_FOUND when this client never verified it). */
  async sshArguments(ref: string, o: { command?: readonly string[]; user?: string; extraOptions?: readonly string[] } = {}): Promise<{ argv: string[]; vmId: string }> {
    const vm = await this.manager.getVm(ref);
    const record = await readVmRecord(this.paths, vm.vmId);
    if (record === undefined || !(await knownAliases(this.paths.knownHosts)).has(vm.vmId)) {
      throw new TrustlaunchError('NOT_FOUND', `VM ${ref} (${vm.vmId}) was never verified by this client, so ssh would refuse it: create it with \`trustlaunch vm create\``);
    }
    if (vm.nodeReport?.ssh === undefined) throw new TrustlaunchError('UNAVAILABLE', `the manager reports no SSH endpoint for VM ${vm.vmId} (state ${vm.state})`);
    const argv = sshArguments({
      endpoint: checkEndpoint(vm.nodeReport.ssh),
      alias: vm.vmId,
      knownHostsFile: this.paths.knownHosts,
      user: o.user ?? userInfo().username,
      identityFile: record.loginKey.privateKeyFile,
      ...(o.command === undefined ? {} : { command: o.command }),
      ...(o.extraOptions === undefined ? {} : { extraOptions: o.extraOptions }),
    });
    return { argv, vmId: vm.vmId };
  }

  async #recordByRef(ref: string): Promise<VmRecord | undefined> {
    const records = await listVmRecords(this.paths);
    return records.get(ref) ?? [...records.values()].find((r) => r.name === ref && r.manager === this.manager.url);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.manager.close(), this.receipts.close()]);
  }
}
