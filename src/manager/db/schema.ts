// The manager's tables (Kysely types). Every table is prefixed `mgr_` so the manager can
// share one database with the CA. Times are integer milliseconds (docs/storage.md).
import type { OneTimeTokenTable } from '../../store/index.js';

export interface UsersTable {
  id: string;
  name: string;
  role: 'admin' | 'user';
  /** hashToken(token): the token itself is never stored. */
  token_hash: string;
  created_at: number;
}

/** A content-addressed file under `<dir>/images/sha256/<hex>`. */
export interface BlobsTable {
  digest: string;
  size: number;
  created_at: number;
}

export interface ImagesTable {
  name: string;
  /** The raw image's digest, or the bundle manifest's. */
  digest: string;
  kind: 'raw' | 'bundle';
  /** Bytes of every part together. */
  size: number;
  created_at: number;
  created_by: string;
}

/** Which blobs an image consists of (raw: one; bundle: manifest, kernel, initrd?, cmdline?). */
export interface ImagePartsTable {
  image_name: string;
  role: 'image' | 'manifest' | 'kernel' | 'initrd' | 'cmdline';
  digest: string;
}

/** Node join tokens (store/one-time-tokens.ts). */
export type JoinTokensTable = OneTimeTokenTable;

export interface NodesTable {
  id: string;
  /** dom0's https base URL. */
  endpoint: string;
  /** PEM of the CA certificate dom0's TLS chain must lead to (pinned). */
  dom0_ca: string;
  /** The bearer credential for dom0: a secret the manager must present, so stored as given. */
  dom0_token: string;
  status: 'joining' | 'up' | 'down';
  joined_at: number;
  last_seen_at: number | null;
  last_error: string | null;
  /** Consecutive failed polls. */
  failures: number;
  memory_total_mib: number;
  memory_used_mib: number;
  vm_count: number;
  max_vms: number;
  /** dom0's word: ok (the mini-domain runs), degraded (it does not: attestation would wait). */
  health: string | null;
  device_kind: string | null;
}

/** Blobs the manager has delivered to a node (so it does not send them twice). */
export interface NodeBlobsTable {
  node_id: string;
  digest: string;
  delivered_at: number;
}

export interface VmsTable {
  id: string;
  user_id: string;
  name: string;
  /** What the user asked for: an image name or a digest. */
  image_ref: string;
  image_digest: string;
  image_kind: 'raw' | 'bundle';
  nonce: string;
  ssh_public_key: string | null;
  hostname: string;
  memory_mib: number;
  node_id: string | null;
  state: string;
  /** Incremented by every state change: the compare-and-set token, and the event number. */
  version: number;
  state_since: number;
  reason_code: string | null;
  reason_message: string | null;
  /** The node's last report on this VM, canonical JSON (untrusted: shown, never believed). */
  node_report: string | null;
  created_at: number;
  updated_at: number;
}

export interface VmEventsTable {
  vm_id: string;
  /** The VM's version after this change. */
  seq: number;
  at: number;
  from_state: string | null;
  to_state: string;
  reason: string | null;
}

export interface ManagerSchema {
  mgr_users: UsersTable;
  mgr_blobs: BlobsTable;
  mgr_images: ImagesTable;
  mgr_image_parts: ImagePartsTable;
  mgr_join_tokens: JoinTokensTable;
  mgr_nodes: NodesTable;
  mgr_node_blobs: NodeBlobsTable;
  mgr_vms: VmsTable;
  mgr_vm_events: VmEventsTable;
}
