// The software TPM's persistent state (what a real TPM keeps in NV memory): persistent
// objects with their private keys, NV indices, clock and reset counters, a proof secret
// for tickets. Serialised as one JSON document; its bytes are secret (private keys) and
// are only ever written with mode 0600 or into a storage-only device.
import { z } from 'zod';
import { TrustlaunchError } from '../../protocol/errors.js';
import { describeIssues } from '../../protocol/messages.js';
import { isBase64url } from '../../protocol/base64url.js';

export const STATE_FORMAT = 'trustlaunch-sim-tpm/1';

const B64 = z.string().max(16_384).refine(isBase64url, 'expected base64url without padding');
const U32 = z.number().int().min(0).max(0xffff_ffff);

const ObjectSchema = z.strictObject({
  handle: U32,
  /** The hierarchy (TPM_RH_*) or persistent parent handle. */
  parent: U32,
  /** TPMT_PUBLIC. */
  public: B64,
  /** PKCS#8 DER of the private key. */
  private: B64,
  /** TPM2B_NAME contents of the qualified name. */
  qualifiedName: B64,
});

const NvSchema = z.strictObject({
  index: U32,
  size: z.number().int().min(0).max(2048),
  /** TPMA_NV_WRITE_STCLEAR: TPM2_NV_WriteLock holds until the next Startup(CLEAR). */
  writeStClear: z.boolean(),
  /** TPMA_NV_WRITEDEFINE: TPM2_NV_WriteLock holds until the index is undefined. */
  writeDefine: z.boolean(),
  /** TPMA_NV_PLATFORMCREATE: defined by the platform (manufacturer); the owner cannot undefine it. */
  platformCreate: z.boolean(),
  written: z.boolean(),
  writeLocked: z.boolean(),
  data: B64,
});

export const SimStateSchema = z.strictObject({
  format: z.literal(STATE_FORMAT),
  manufacturer: z.string().max(64),
  /** TPMS_ATTEST.firmwareVersion, 16 hex digits. */
  firmwareVersion: z.string().regex(/^[0-9a-f]{16}$/),
  /** Secret for tickets (the TPM's hierarchy proof). */
  proof: B64,
  /** Milliseconds of clock accumulated up to the last store. */
  clock: z.number().int().min(0).max(2 ** 52),
  resetCount: U32,
  restartCount: U32,
  objects: z.array(ObjectSchema).max(64),
  nv: z.array(NvSchema).max(64),
});

export type SimState = z.infer<typeof SimStateSchema>;
export type SimObject = z.infer<typeof ObjectSchema>;
export type SimNvIndex = z.infer<typeof NvSchema>;

export function serializeState(state: SimState): Buffer {
  return Buffer.from(`${JSON.stringify(state, null, 1)}\n`, 'utf8');
}

/** Parses state bytes; a damaged or foreign file is TPM_PARSE_ERROR, never a half-loaded TPM. */
export function parseState(bytes: Uint8Array): SimState {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new TrustlaunchError('TPM_PARSE_ERROR', 'software TPM state is not JSON', { cause });
  }
  const parsed = SimStateSchema.safeParse(json);
  if (!parsed.success) throw new TrustlaunchError('TPM_PARSE_ERROR', `software TPM state: ${describeIssues(parsed.error)}`);
  return parsed.data;
}
