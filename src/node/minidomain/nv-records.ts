// What the mini-domain keeps in the auth device's NV (DESIGN.md §3.3, G4): the CA's root
// certificate (DER, NV_INDEX.CA_CERTIFICATE) and the registration record (canonical JSON,
// NV_INDEX.REGISTRATION: node id, which EK, the AK handle). Only the mini-domain reaches
// the device, so dom0 can neither read a substitute in nor change these. Each index holds
// a 2-byte length and the bytes, since an index's size is fixed when it is defined.
import { z } from 'zod';
import { parseCertificate, type Certificate } from '../../crypto/x509.js';
import { canonicalBytes } from '../../protocol/canonical-json.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { IdSchema, describeIssues } from '../../protocol/messages.js';
import { NV_INDEX, NV_INDEX_MAX, type AuthDevice, type EkAlgorithm } from '../../tpm/auth-device.js';

export const RegistrationRecordSchema = z.strictObject({
  v: z.literal(1),
  nodeId: IdSchema,
  ek: z.enum(['rsa2048', 'ecc-p256', 'ecc-p384']),
  akHandle: z.number().int().min(0x81000000).max(0x81ffffff),
  /** SHA-256 fingerprint of the CA certificate written beside it (the two are one registration). */
  caCertificate: z.string().regex(/^sha256:[0-9a-f]{64}$/),
});
export type RegistrationRecord = z.infer<typeof RegistrationRecordSchema> & { readonly ek: EkAlgorithm };

async function readIndex(device: AuthDevice, index: number): Promise<Buffer | undefined> {
  if ((await device.nvSize(index)) === undefined) return undefined;
  let data: Buffer;
  try {
    data = Buffer.from(await device.nvRead(index));
  } catch (e) {
    // Defined but never written: a registration that stopped half-way.
    if (e instanceof TrustlaunchError && e.code === 'NV_UNINITIALIZED') return undefined;
    throw e;
  }
  if (data.length < 2) return undefined;
  const length = data.readUInt16BE(0);
  if (length > data.length - 2) throw new TrustlaunchError('MALFORMED_REQUEST', `NV index 0x${index.toString(16)} holds a length beyond its size`);
  return data.subarray(2, 2 + length);
}

async function writeIndex(device: AuthDevice, index: number, bytes: Uint8Array): Promise<void> {
  const size = bytes.length + 2;
  if (size > NV_INDEX_MAX) throw new TrustlaunchError('NV_SIZE_EXCEEDED', `${bytes.length} bytes do not fit an NV index (${NV_INDEX_MAX - 2} at most)`);
  const existing = await device.nvSize(index);
  if (existing !== undefined && existing !== size) await device.nvUndefine(index);
  if (existing !== size) await device.nvDefine(index, { size });
  const data = Buffer.alloc(size);
  data.writeUInt16BE(bytes.length, 0);
  data.set(bytes, 2);
  await device.nvWrite(index, data);
}

/** The CA certificate the device holds, or undefined before the first registration. */
export async function readCaCertificate(device: AuthDevice): Promise<Certificate | undefined> {
  const der = await readIndex(device, NV_INDEX.CA_CERTIFICATE);
  return der === undefined ? undefined : parseCertificate(der);
}

export async function writeCaCertificate(device: AuthDevice, certificate: Certificate): Promise<void> {
  await writeIndex(device, NV_INDEX.CA_CERTIFICATE, certificate.der);
}

export async function readRegistration(device: AuthDevice): Promise<RegistrationRecord | undefined> {
  const bytes = await readIndex(device, NV_INDEX.REGISTRATION);
  if (bytes === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'the registration record in NV is not JSON');
  }
  const parsed = RegistrationRecordSchema.safeParse(json);
  if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `the registration record in NV: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

export async function writeRegistration(device: AuthDevice, record: RegistrationRecord): Promise<void> {
  await writeIndex(device, NV_INDEX.REGISTRATION, canonicalBytes(RegistrationRecordSchema.parse(record)));
}
