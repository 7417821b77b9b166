// The CA's tables (docs/ca.md "Storage"). Column conventions are the store's
// (docs/storage.md): ids and binary as text, times as integer milliseconds.
import type { OneTimeTokenTable } from '../../store/index.js';

export type NodeStatus = 'active' | 'revoked';
export type RegistrationState = 'pending' | 'answered';
/** What became of one request: evidence (affirming, contraindicated, refused) or registration (challenged, registered, refused). */
export type DecisionOutcome = 'affirming' | 'contraindicated' | 'refused' | 'challenged' | 'registered';
export type DecisionKind = 'evidence' | 'registration';

/** Enrollment tokens (store/one-time-tokens.ts). */
export type TokenTable = OneTimeTokenTable;

export interface RegistrationTable {
  id: string;
  node_id: string;
  token_id: string;
  ek_public: string;
  ek_certificate: string;
  ak_public: string;
  ak_name: string;
  secret_hash: string;
  qualifying_data: string;
  state: RegistrationState;
  created_at: number;
  expires_at: number;
}

export interface NodeTable {
  id: string;
  status: NodeStatus;
  ek_public: string;
  ek_certificate: string;
  ak_public: string;
  ak_name: string;
  platform: string;
  registered_at: number;
  revoked_at: number | null;
  revoke_reason: string | null;
}

export interface AllowlistTable {
  name: string;
  kernel: string;
  initrd: string | null;
  cmdline: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface PlatformTable {
  name: string;
  hypervisor: string;
  minidomain: string;
  firmware: string | null;
  boot_config: string | null;
  /** Canonical JSON `{ "index": "hex" }` or null. */
  pcrs: string | null;
  created_at: number;
}

export interface ReceiptTable {
  nonce: string;
  jti: string;
  node_id: string;
  vm_id: string;
  status: 'affirming' | 'contraindicated';
  receipt: string;
  host_certificate: string | null;
  issued_at: number;
  expires_at: number;
}

export interface DecisionTable {
  id: string;
  at: number;
  kind: DecisionKind;
  outcome: DecisionOutcome;
  node_id: string | null;
  vm_id: string | null;
  nonce: string | null;
  step: string | null;
  code: string | null;
  message: string | null;
  evidence_hash: string | null;
  receipt_jti: string | null;
}

export interface CaSchema {
  ca_tokens: TokenTable;
  ca_registrations: RegistrationTable;
  ca_nodes: NodeTable;
  ca_allowlist: AllowlistTable;
  ca_platforms: PlatformTable;
  ca_receipts: ReceiptTable;
  ca_decisions: DecisionTable;
}
