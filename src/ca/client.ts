// Typed clients of the CA's HTTP API over TLS pinned to the CA root: `CaClient` for the
// public endpoints (nodes, users, tests) and `CaAdminClient` for the admin endpoints
// (the `trustlaunch ca …` admin commands).
import type { z } from 'zod';
import { JsonClient } from '../http/client.js';
import { pinnedCaAgent } from '../crypto/tls.js';
import type { Certificate } from '../crypto/x509.js';
import type { CredentialAnswer, CredentialChallenge, Evidence, RegistrationRequest, RegistrationResult } from '../protocol/messages.js';
import type { CaIdentity } from './identity.js';
import type {
  AllowlistAddSchema,
  AllowlistViewSchema,
  DecisionPageSchema,
  EvidenceResponseSchema,
  NodeViewSchema,
  PlatformAddSchema,
  PlatformViewSchema,
  ReceiptResponseSchema,
  TokenCreatedSchema,
  TokenViewSchema,
} from './http/schemas.js';

export type EvidenceResponse = z.infer<typeof EvidenceResponseSchema>;
export type ReceiptResponse = z.infer<typeof ReceiptResponseSchema>;
export type TokenCreated = z.infer<typeof TokenCreatedSchema>;
export type TokenView = z.infer<typeof TokenViewSchema>;
export type AllowlistAdd = z.infer<typeof AllowlistAddSchema>;
export type AllowlistView = z.infer<typeof AllowlistViewSchema>;
export type PlatformAdd = z.infer<typeof PlatformAddSchema>;
export type PlatformView = z.infer<typeof PlatformViewSchema>;
export type NodeView = z.infer<typeof NodeViewSchema>;
export type DecisionPage = z.infer<typeof DecisionPageSchema>;

export interface CaClientOptions {
  readonly url: string;
  /** The CA root certificate: the only certificate the CA's TLS chain may lead to. */
  readonly root: Certificate;
  readonly timeoutMs?: number;
}

function jsonClient(opts: CaClientOptions, token?: string): JsonClient {
  return new JsonClient({
    baseUrl: opts.url,
    dispatcher: pinnedCaAgent({ ca: opts.root }),
    unreachableCode: 'CA_UNREACHABLE',
    ...(token === undefined ? {} : { token }),
    ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
  });
}

export class CaClient {
  readonly http: JsonClient;

  constructor(opts: CaClientOptions) {
    this.http = jsonClient(opts);
  }

  keys(): Promise<CaIdentity> {
    return this.http.call('GET', '/v1/keys');
  }

  startRegistration(request: RegistrationRequest): Promise<CredentialChallenge> {
    return this.http.call('POST', '/v1/registrations', { body: request });
  }

  answerRegistration(registrationId: string, answer: CredentialAnswer): Promise<RegistrationResult> {
    return this.http.call('POST', `/v1/registrations/${encodeURIComponent(registrationId)}/answer`, { body: answer });
  }

  evidence(evidence: Evidence): Promise<EvidenceResponse> {
    return this.http.call('POST', '/v1/evidence', { body: evidence });
  }

  /** The receipt for `nonce`, long-polling up to `waitSeconds` (NOT_FOUND after that). */
  receipt(nonce: string, waitSeconds = 0): Promise<ReceiptResponse> {
    return this.http.call('GET', `/v1/receipts/${encodeURIComponent(nonce)}`, { query: { wait: waitSeconds }, timeoutMs: (waitSeconds + 30) * 1000 });
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

export class CaAdminClient {
  readonly http: JsonClient;

  constructor(opts: CaClientOptions & { readonly token: string }) {
    this.http = jsonClient(opts, opts.token);
  }

  createToken(ttlSeconds?: number): Promise<TokenCreated> {
    return this.http.call('POST', '/v1/admin/tokens', { body: ttlSeconds === undefined ? {} : { ttlSeconds } });
  }

  async listTokens(): Promise<TokenView[]> {
    return (await this.http.call<{ tokens: TokenView[] }>('GET', '/v1/admin/tokens')).tokens;
  }

  addAllowlist(entry: AllowlistAdd): Promise<AllowlistView> {
    return this.http.call('POST', '/v1/admin/allowlist', { body: entry });
  }

  async listAllowlist(): Promise<AllowlistView[]> {
    return (await this.http.call<{ entries: AllowlistView[] }>('GET', '/v1/admin/allowlist')).entries;
  }

  revokeAllowlist(name: string): Promise<AllowlistView> {
    return this.http.call('POST', `/v1/admin/allowlist/${encodeURIComponent(name)}/revoke`);
  }

  addPlatform(reference: PlatformAdd): Promise<PlatformView> {
    return this.http.call('POST', '/v1/admin/platforms', { body: reference });
  }

  async listPlatforms(): Promise<PlatformView[]> {
    return (await this.http.call<{ platforms: PlatformView[] }>('GET', '/v1/admin/platforms')).platforms;
  }

  removePlatform(name: string): Promise<{ removed: string }> {
    return this.http.call('DELETE', `/v1/admin/platforms/${encodeURIComponent(name)}`);
  }

  async listNodes(): Promise<NodeView[]> {
    return (await this.http.call<{ nodes: NodeView[] }>('GET', '/v1/admin/nodes')).nodes;
  }

  node(id: string): Promise<NodeView> {
    return this.http.call('GET', `/v1/admin/nodes/${encodeURIComponent(id)}`);
  }

  revokeNode(id: string, reason?: string): Promise<NodeView> {
    return this.http.call('POST', `/v1/admin/nodes/${encodeURIComponent(id)}/revoke`, { body: reason === undefined ? {} : { reason } });
  }

  decisions(query: { node?: string; since?: string; limit?: number; cursor?: string } = {}): Promise<DecisionPage> {
    return this.http.call('GET', '/v1/admin/decisions', { query });
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
