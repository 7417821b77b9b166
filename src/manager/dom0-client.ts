// The manager's client for a node's dom0 API (HTTPS, TLS pinned to the CA certificate the
// node gave at join, bearer token). dom0 is untrusted: every answer is parsed against a
// bounded schema (NODE_RESPONSE_INVALID otherwise), and a node that cannot be reached is
// NODE_UNREACHABLE, whatever the underlying socket error.
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { parseCertificate } from '../crypto/x509.js';
import { pinnedCaAgent } from '../crypto/tls.js';
import { JsonClient } from '../http/client.js';
import type { Digest } from '../protocol/digest.js';
import { isTrustlaunchError, TrustlaunchError } from '../protocol/errors.js';
import { DigestSchema, describeIssues } from '../protocol/messages.js';
import type { NodeCredentials, NodeHealthReport } from './nodes.js';
import type { AttestationStatus, NodeVmReport } from './node-report.js';
import { VM_BACKENDS, type VmBackendKind } from './scheduler.js';

const Text = (max: number) => z.string().max(max);

const Dom0NodeSchema = z.object({
  id: Text(63),
  capacity: z.object({
    memoryMiB: z.object({ total: z.number().int().min(0).max(2 ** 32), used: z.number().int().min(0).max(2 ** 32) }),
    maxVms: z.number().int().min(0).max(1_000_000),
  }),
  vmCount: z.number().int().min(0).max(1_000_000),
  health: Text(64),
  device: z.object({ kind: Text(64) }),
  vm: z.object({ backend: z.enum(VM_BACKENDS) }),
});

const Dom0VmSchema = z.object({
  vmId: Text(63),
  state: Text(32),
  attestation: z.object({
    state: z.enum(['booting', 'attesting', 'attested', 'refused']),
    code: Text(64).optional(),
    message: Text(512).optional(),
  }),
  ssh: z.object({ host: Text(255), port: z.number().int().min(1).max(65535) }).optional(),
  kernel: DigestSchema.optional(),
});
type Dom0Vm = z.infer<typeof Dom0VmSchema>;

const Dom0VmListSchema = z.object({ vms: z.array(Dom0VmSchema).max(100_000) });

export interface Dom0CreateVm {
  readonly vmId: string;
  readonly image: Digest;
  readonly nonce: string;
  readonly hostname: string;
  readonly authorizedKey?: string;
  readonly memoryMiB?: number;
}

export interface Dom0ClientOptions {
  /** Per-request timeout for small calls (default 5 s). */
  readonly timeoutMs?: number;
  /** Timeout for image uploads (default 10 min). */
  readonly uploadTimeoutMs?: number;
}

export class Dom0Client {
  readonly nodeId: string;
  readonly #client: JsonClient;
  readonly #agent: Dispatcher;
  readonly #uploadTimeoutMs: number;

  constructor(creds: NodeCredentials, opts: Dom0ClientOptions = {}) {
    this.nodeId = creds.id;
    this.#agent = pinnedCaAgent({ ca: parseCertificate(creds.dom0Ca) });
    this.#client = new JsonClient({
      baseUrl: creds.endpoint,
      dispatcher: this.#agent,
      token: creds.dom0Token,
      timeoutMs: opts.timeoutMs ?? 5_000,
      unreachableCode: 'NODE_UNREACHABLE',
    });
    this.#uploadTimeoutMs = opts.uploadTimeoutMs ?? 600_000;
  }

  async node(): Promise<NodeHealthReport & { id: string; vmBackend: VmBackendKind }> {
    const n = parse(Dom0NodeSchema, await this.#call('GET', '/v1/node'), 'GET /v1/node');
    return {
      id: n.id,
      memoryTotalMiB: n.capacity.memoryMiB.total,
      memoryUsedMiB: n.capacity.memoryMiB.used,
      vmCount: n.vmCount,
      maxVms: n.capacity.maxVms,
      health: n.health,
      deviceKind: n.device.kind,
      vmBackend: n.vm.backend,
    };
  }

  /** Streams an image blob to the node, which checks it against `digest`. */
  async putImage(digest: Digest, body: Readable, size: number, signal?: AbortSignal): Promise<void> {
    await this.#call('PUT', `/v1/images/${digest}`, {
      raw: { body, contentType: 'application/octet-stream', length: size },
      timeoutMs: this.#uploadTimeoutMs,
      ...(signal === undefined ? {} : { signal }),
    });
  }

  async createVm(request: Dom0CreateVm, signal?: AbortSignal): Promise<NodeVmReport> {
    const answer = await this.#call('POST', '/v1/vms', { body: request, ...(signal === undefined ? {} : { signal }) });
    return toReport(parse(Dom0VmSchema, answer, 'POST /v1/vms'));
  }

  /** The node's view of a VM, or undefined when the node does not have it. */
  async vm(vmId: string, signal?: AbortSignal): Promise<NodeVmReport | undefined> {
    try {
      const answer = await this.#call('GET', `/v1/vms/${encodeURIComponent(vmId)}`, signal === undefined ? {} : { signal });
      return toReport(parse(Dom0VmSchema, answer, 'GET /v1/vms/{id}'));
    } catch (e) {
      if (isTrustlaunchError(e, 'NOT_FOUND')) return undefined;
      throw e;
    }
  }

  async vms(): Promise<Map<string, NodeVmReport>> {
    const list = parse(Dom0VmListSchema, await this.#call('GET', '/v1/vms'), 'GET /v1/vms');
    return new Map(list.vms.map((v) => [v.vmId, toReport(v)]));
  }

  /** Asks the node to stop a VM; false when the node does not have it. */
  async stopVm(vmId: string, signal?: AbortSignal): Promise<boolean> {
    return this.#absentIsFalse(() => this.#call('POST', `/v1/vms/${encodeURIComponent(vmId)}/stop`, signal === undefined ? {} : { signal }));
  }

  /** Stops (if need be) and removes a VM; false when the node does not have it. */
  async deleteVm(vmId: string): Promise<boolean> {
    return this.#absentIsFalse(() => this.#call('DELETE', `/v1/vms/${encodeURIComponent(vmId)}`));
  }

  async close(): Promise<void> {
    await this.#client.close();
    await this.#agent.close();
  }

  async #absentIsFalse(fn: () => Promise<unknown>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (e) {
      if (isTrustlaunchError(e, 'NOT_FOUND')) return false;
      throw e;
    }
  }

  #call(method: Dispatcher.HttpMethod, path: string, options?: Parameters<JsonClient['call']>[2]): Promise<unknown> {
    return this.#client.call(method, path, options);
  }
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new TrustlaunchError('NODE_RESPONSE_INVALID', `${what}: ${describeIssues(result.error)}`);
  return result.data;
}

function toReport(v: Dom0Vm): NodeVmReport {
  const status: AttestationStatus = v.attestation.state;
  return {
    state: v.state,
    attestation: status,
    ...(v.attestation.code === undefined ? {} : { code: v.attestation.code }),
    ...(v.attestation.message === undefined ? {} : { message: v.attestation.message }),
    ...(v.ssh === undefined ? {} : { ssh: { host: v.ssh.host, port: v.ssh.port } }),
    ...(v.kernel === undefined ? {} : { kernel: v.kernel }),
    seenAt: Date.now(),
  };
}
