// The closed set of error codes shared by CA, node, manager and client.
// Every failure a caller may need to act on has exactly one code here; the
// `kind` keeps apart malformed input, failed cryptography, policy refusals,
// unsupported requests, state conflicts and transport trouble (panva/jose style).

export type ErrorKind = 'malformed' | 'crypto' | 'policy' | 'unsupported' | 'state' | 'transport' | 'internal';

interface CodeInfo {
  readonly kind: ErrorKind;
  /** HTTP status used when this error crosses a REST boundary. */
  readonly status: number;
  /** One line: what the code means. */
  readonly meaning: string;
}

const def = (kind: ErrorKind, status: number, meaning: string): CodeInfo => ({ kind, status, meaning });

export const ERROR_CODES = {
  // --- malformed input -------------------------------------------------------
  MALFORMED_REQUEST: def('malformed', 400, 'the request does not match its schema'),
  MALFORMED_DIGEST: def('malformed', 400, 'a digest is not of the form sha256:<64 lowercase hex>'),
  MALFORMED_NONCE: def('malformed', 400, 'a nonce is not 32 bytes of base64url without padding'),
  MALFORMED_JSON: def('malformed', 400, 'a value cannot be represented as canonical JSON (RFC 8785)'),
  MALFORMED_KEY: def('malformed', 400, 'a key cannot be parsed or is of an unsupported type'),
  MALFORMED_CERTIFICATE: def('malformed', 400, 'a certificate cannot be parsed'),
  TPM_PARSE_ERROR: def('malformed', 400, 'TPM structure bytes are malformed, truncated or oversized'),
  EVENT_LOG_MALFORMED: def('malformed', 400, 'the event log cannot be parsed'),
  BODY_TOO_LARGE: def('malformed', 413, 'the request body exceeds its size bound'),

  // --- authentication / authorisation ---------------------------------------
  UNAUTHENTICATED: def('policy', 401, 'no valid credential was presented'),
  FORBIDDEN: def('policy', 403, 'the credential does not allow this action'),

  // --- registration (DESIGN.md §4.1) -----------------------------------------
  TOKEN_INVALID: def('policy', 403, 'the enrollment token is unknown, already used or expired'),
  EK_CERT_INVALID: def('policy', 403, 'the EK certificate does not chain to a configured endorsement root'),
  EK_CERT_MISMATCH: def('policy', 403, 'the EK certificate does not certify the presented EK public key'),
  AK_ATTRIBUTES_INVALID: def('policy', 403, 'the AK is not a restricted, fixedTPM, fixedParent, sensitiveDataOrigin signing key of an allowed type'),
  AK_NAME_MISMATCH: def('policy', 403, 'the AK name does not match its public area'),
  CREDENTIAL_MISMATCH: def('policy', 403, 'the secret returned does not match the credential challenge'),
  REGISTRATION_NOT_FOUND: def('state', 404, 'no pending registration with this id (unknown, completed or expired)'),
  NODE_ALREADY_REGISTERED: def('state', 409, 'a node with this id is already registered'),

  // --- evidence pipeline (DESIGN.md §4.2 step 7) -----------------------------
  NODE_UNKNOWN: def('policy', 403, 'the node is not registered with the CA'),
  NODE_NOT_ACTIVE: def('policy', 403, 'the node is registered but not active'),
  NODE_REVOKED: def('policy', 403, 'the node has been revoked'),
  QUOTE_SIGNATURE_INVALID: def('crypto', 403, "the quote is not signed by the node's attestation key"),
  QUOTE_NOT_TPM_GENERATED: def('crypto', 403, 'the attested structure lacks TPM_GENERATED_VALUE or is not a TPM_ST_ATTEST_QUOTE'),
  QUALIFYING_DATA_MISMATCH: def('crypto', 403, "the quote's extraData is not SHA-256 of the canonical claims (or the expected challenge)"),
  PCR_DIGEST_MISMATCH: def('crypto', 403, "the quote's PCR digest does not match the PCR values supplied"),
  PCR_SELECTION_MISMATCH: def('crypto', 403, 'the quoted PCR selection differs from the PCR values supplied'),
  EVENT_LOG_REPLAY_MISMATCH: def('crypto', 403, 'replaying the event log does not give the quoted PCR values'),
  PLATFORM_NOT_TRUSTED: def('policy', 403, "the platform measurements match none of the CA's reference values"),
  KERNEL_NOT_ALLOWED: def('policy', 403, 'the kernel digest is not on the allowlist'),
  KERNEL_EXPIRED: def('policy', 403, "the kernel digest's allowlist entry has expired"),
  KERNEL_REVOKED: def('policy', 403, "the kernel digest's allowlist entry has been revoked"),
  NONCE_REUSED: def('policy', 409, 'evidence for this (node, nonce) was already judged'),
  EVIDENCE_STALE: def('policy', 403, 'the evidence time is outside the allowed clock skew'),

  // --- user client: receipt verification -------------------------------------
  CA_NOT_PINNED: def('policy', 400, 'no CA key is pinned; run `trustlaunch ca trust` first'),
  CA_IDENTITY_MISMATCH: def('crypto', 403, 'the CA identity document does not have the pinned fingerprint'),
  RECEIPT_MALFORMED: def('malformed', 400, 'the receipt is not a well-formed JWT with the expected claims'),
  RECEIPT_ALGORITHM_NOT_ALLOWED: def('crypto', 403, 'the receipt is signed with an algorithm outside the pinned list'),
  RECEIPT_SIGNATURE_INVALID: def('crypto', 403, 'the receipt signature does not verify with the pinned CA key'),
  RECEIPT_TYPE_INVALID: def('crypto', 403, 'the receipt header typ is not eat+jwt'),
  RECEIPT_ISSUER_MISMATCH: def('policy', 403, 'the receipt was issued by another CA'),
  RECEIPT_EXPIRED: def('policy', 403, 'the receipt has expired'),
  RECEIPT_NOT_YET_VALID: def('policy', 403, 'the receipt was issued in the future (beyond the allowed skew)'),
  RECEIPT_CONTRAINDICATED: def('policy', 403, 'the CA judged the launch untrustworthy'),
  NONCE_MISMATCH: def('policy', 403, 'the receipt nonce is not the nonce this client sent'),
  KERNEL_MISMATCH: def('policy', 403, 'the attested kernel digest differs from the one the user expected'),
  VM_MISMATCH: def('policy', 403, 'the receipt names another VM than the one created'),
  HOST_KEY_MISMATCH: def('policy', 403, 'the attested SSH host key differs from the one presented'),
  HOST_CERT_INVALID: def('crypto', 403, 'the OpenSSH host certificate is not valid for this key, name or CA'),
  AUTHORIZED_KEY_MISMATCH: def('policy', 403, 'the receipt attests another authorized login key than the one this client asked the VM to trust'),
  LAUNCH_FAILED: def('state', 409, 'the launch failed before the CA judged it: the CA holds no receipt for this nonce (the manager says why; unverified)'),
  CERT_CHAIN_INVALID: def('crypto', 403, 'an X.509 certificate chain does not verify'),

  // --- node: hypervisor, IOMMU, device ---------------------------------------
  LAUNCH_DIGEST_MISMATCH: def('policy', 403, 'the mini-domain image digest differs from the launch policy frozen at boot'),
  LAUNCH_POLICY_FROZEN: def('policy', 403, 'the launch policy is frozen at boot and cannot be changed'),
  IOMMU_FAULT: def('policy', 403, 'a DMA request was blocked by the IOMMU'),
  MMIO_DENIED: def('policy', 403, "a domain without the grant touched the device's MMIO range"),
  ASSIGNMENT_DENIED: def('policy', 403, 'a device assignment breaks an IOMMU invariant'),
  IOMMU_MAP_DENIED: def('policy', 403, "an I/O page-table change would reach memory outside the domain's own"),
  BOOT_CONFIG_INVALID: def('malformed', 400, 'the node boot configuration does not match its schema'),
  CAPABILITY_DENIED: def('policy', 403, "the domain's role does not hold this capability"),
  DOMAIN_STATE_INVALID: def('state', 409, 'the domain is not in a state that allows this operation'),
  DEVICE_NOT_READY: def('state', 503, 'the auth device is not assigned or not started'),
  NV_INDEX_UNDEFINED: def('state', 404, 'the NV index is not defined'),
  NV_INDEX_EXISTS: def('state', 409, 'the NV index is already defined'),
  NV_LOCKED: def('policy', 403, 'the NV index is write-locked'),
  NV_SIZE_EXCEEDED: def('malformed', 400, 'NV data exceeds the index size or NV_INDEX_MAX'),
  NV_ATTRIBUTES: def('policy', 403, 'the NV index attributes do not allow this operation (TPM_RC_ATTRIBUTES, TPM_RC_NV_AUTHORIZATION)'),
  NV_UNINITIALIZED: def('state', 409, 'the NV index has not been written yet (TPM_RC_NV_UNINITIALIZED)'),
  CA_UNREACHABLE: def('transport', 503, 'the CA could not be reached'),
  CAPACITY_EXCEEDED: def('state', 409, 'the node has no capacity for this VM'),
  VM_BOOT_FAILED: def('state', 500, 'the VM did not boot or did not report its host key in time'),
  NVSTORE_CORRUPT: def('state', 500, 'the pci-nvstore medium holds no valid TPM state (bad superblock, or both state slots damaged)'),
  NVSTORE_IO_ERROR: def('state', 502, 'the pci-nvstore device reported an error for a block transfer'),
  MINIDOMAIN_IMAGE_INVALID: def('policy', 403, 'the measured mini-domain image is not a well-formed agent archive, or not the agent code this node runs'),

  // --- TPM client -------------------------------------------------------------
  TPM_RESPONSE_ERROR: def('state', 502, 'the TPM answered a command with an error response code'),
  TPM_TRANSPORT_ERROR: def('transport', 502, 'the TPM transport failed or closed'),
  TPM_TIMEOUT: def('transport', 504, 'the TPM did not answer in time'),
  CREDENTIAL_INTEGRITY: def('crypto', 403, 'TPM2_ActivateCredential refused the credential: its integrity check fails (made for another AK name or EK)'),
  TPM_OBJECT_INVALID: def('state', 409, 'the TPM object or handle does not exist or does not have the attributes this command needs'),

  // --- manager ------------------------------------------------------------------
  BLOB_DIGEST_MISMATCH: def('malformed', 400, 'the uploaded bytes do not hash to the digest the upload named'),
  NO_NODE_AVAILABLE: def('state', 503, 'no node that is up has capacity for this VM'),
  NO_NODE_FOR_IMAGE: def('state', 409, "no node that is up runs the VM backend the image needs (a kernel bundle: QEMU; a raw image: process VMs)"),
  NODE_UNREACHABLE: def('transport', 503, "a node's dom0 could not be reached"),
  NODE_RESPONSE_INVALID: def('transport', 502, "a node's dom0 answered with something that does not match its schema"),
  VM_LOST: def('state', 409, 'the node no longer knows the VM, or it never reached its node'),
  ILLEGAL_TRANSITION: def('internal', 500, 'a VM state change outside the lifecycle table was attempted (a bug)'),

  // --- storage ------------------------------------------------------------------
  MIGRATION_FAILED: def('internal', 500, 'the database schema could not be migrated (or a read-only database is not migrated)'),

  // --- local files ----------------------------------------------------------------
  FILE_INSECURE: def('policy', 500, 'a secret file is a symlink, not a regular file, not owned by this user, or open to group or others'),

  // --- general ------------------------------------------------------------------
  NOT_FOUND: def('state', 404, 'the resource does not exist (or is not visible to this caller)'),
  CONFLICT: def('state', 409, 'the request conflicts with the current state'),
  UNSUPPORTED: def('unsupported', 400, 'the request asks for something this implementation does not support'),
  UNAVAILABLE: def('transport', 503, 'a service this operation needs is unavailable'),
  TIMEOUT: def('transport', 504, 'the operation did not complete in time'),
  INTERNAL: def('internal', 500, 'an unexpected internal error'),
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

export function errorInfo(code: ErrorCode): CodeInfo {
  return ERROR_CODES[code];
}

/** Base of every error trustlaunch raises on purpose. `code` is stable; `message` is for people. */
export class TrustlaunchError extends Error {
  readonly code: ErrorCode;
  /** Extra machine-readable detail (e.g. which claim, which PCR). Never secrets. */
  readonly detail: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; detail?: Record<string, unknown> }) {
    super(message ?? ERROR_CODES[code].meaning, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TrustlaunchError';
    this.code = code;
    this.detail = options?.detail;
  }

  get kind(): ErrorKind {
    return ERROR_CODES[this.code].kind;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  toJSON(): { code: ErrorCode; message: string; detail?: Readonly<Record<string, unknown>> } {
    return this.detail === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, detail: this.detail };
  }
}

export function isTrustlaunchError(e: unknown, code?: ErrorCode): e is TrustlaunchError {
  return e instanceof TrustlaunchError && (code === undefined || e.code === code);
}
