// The authentication device of DESIGN.md §3.4 (the patent's 인증 디바이스): one
// interface, several backends (`sim` software TPM, `swtpm`/`tpm` through the TPM 2.0
// client, `pci-nvstore` storage-only device with the crypto done by the mini-domain).
// Only the hypervisor holds an AuthDevice; domains reach it through the hypervisor's
// MMIO / IOMMU checks. All byte arrays are TPM wire encodings (TPM 2.0 Part 2).

export type AuthDeviceKind = 'sim' | 'swtpm' | 'tpm' | 'pci-nvstore';

/** Endorsement key algorithms a device may carry (TCG EK Credential Profile templates). */
export type EkAlgorithm = 'rsa2048' | 'ecc-p256' | 'ecc-p384';

export interface Endorsement {
  readonly algorithm: EkAlgorithm;
  /** TPMT_PUBLIC of the EK. */
  readonly public: Uint8Array;
  /** DER X.509 EK certificate from the device's NV EK certificate index. */
  readonly certificate: Uint8Array;
}

export interface AttestationKey {
  /** Persistent handle of the AK (0x81xxxxxx). */
  readonly handle: number;
  /** TPMT_PUBLIC of the AK. */
  readonly public: Uint8Array;
  /** TPM2B_NAME contents: nameAlg ‖ H(TPMT_PUBLIC). */
  readonly name: Uint8Array;
}

export interface QuoteResult {
  /** The raw TPMS_ATTEST bytes the signature covers. */
  readonly attest: Uint8Array;
  /** TPMT_SIGNATURE. */
  readonly signature: Uint8Array;
}

export interface NvIndexAttributes {
  /** Size in bytes (at most NV_INDEX_MAX = 2048). */
  readonly size: number;
  /** When true, TPM2_NV_WriteLock may later forbid writes until the next TPM reset (TPMA_NV_WRITE_STCLEAR). */
  readonly writeLockable?: boolean;
}

export interface AuthDevice {
  readonly kind: AuthDeviceKind;
  /** A line for logs, e.g. "swtpm 0.7.1 at 127.0.0.1:2321". */
  readonly description: string;

  /**
   * Power-on: TPM2_Startup(CLEAR). On the software TPM and swtpm, PCRs start from their
   * reset values; a hardware TPM already holds the firmware's boot measurements.
   * Persistent objects and NV stay. The hypervisor re-measures after every power-on.
   */
  powerOn(): Promise<void>;
  /** Orderly shutdown and release of the transport. */
  powerOff(): Promise<void>;

  /** The endorsement keys the device carries, with their certificates. */
  endorsements(): Promise<readonly Endorsement[]>;
  /** Returns the persistent AK, creating it under the EK hierarchy on first use. */
  ensureAttestationKey(ek: EkAlgorithm): Promise<AttestationKey>;
  /** TPM2_ActivateCredential with the AK and the EK of `ek`; returns the recovered secret. */
  activateCredential(ak: AttestationKey, ek: EkAlgorithm, credentialBlob: Uint8Array, encryptedSecret: Uint8Array): Promise<Uint8Array>;
  /** TPM2_Quote with the AK over SHA-256 PCRs `pcrs`, extraData = `qualifyingData`. */
  quote(ak: AttestationKey, pcrs: readonly number[], qualifyingData: Uint8Array): Promise<QuoteResult>;

  /** TPM2_PCR_Extend of the SHA-256 bank. */
  pcrExtend(pcr: number, digest: Uint8Array): Promise<void>;
  /** TPM2_PCR_Read of the SHA-256 bank. */
  pcrRead(pcrs: readonly number[]): Promise<ReadonlyMap<number, Uint8Array>>;

  nvDefine(index: number, attributes: NvIndexAttributes): Promise<void>;
  nvWrite(index: number, data: Uint8Array, offset?: number): Promise<void>;
  nvRead(index: number): Promise<Uint8Array>;
  /** Undefined indices answer `undefined`, not an error. */
  nvSize(index: number): Promise<number | undefined>;
  nvWriteLock(index: number): Promise<void>;
  nvUndefine(index: number): Promise<void>;
}

/** NV indices trustlaunch uses in the owner range (TPM_HT_NV_INDEX, owner-defined 0x015xxxxx). */
export const NV_INDEX = {
  /** The CA's certificate (DER), written at registration. */
  CA_CERTIFICATE: 0x01500010,
  /** Registration record: node id and AK handle (canonical JSON). */
  REGISTRATION: 0x01500011,
} as const;

/** NV indices where manufacturers store EK certificates (TCG EK Credential Profile §2.2.1.5). */
export const EK_CERT_NV_INDEX = {
  rsa2048: 0x01c00002,
  'ecc-p256': 0x01c0000a,
  'ecc-p384': 0x01c00016,
} as const satisfies Record<EkAlgorithm, number>;

export const NV_INDEX_MAX = 2048;
