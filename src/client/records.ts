// What the client remembers about each VM it verified: CONFIG/vms/<vmId>.json, written
// atomically together with the known_hosts lines and only after every check passed. It
// keeps the receipt and host certificate exactly as the CA served them, the nonce this
// client chose, and the login key used — so `vm receipt` can verify it all again offline,
// and `vm ssh` knows which key to offer. Nothing in it is secret.
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../crypto/files.js';
import { IdSchema, NonceSchema } from '../protocol/messages.js';
import { ensureClientDir, type ClientPaths } from './paths.js';

export const VmRecordSchema = z.strictObject({
  v: z.literal(1),
  vmId: IdSchema,
  name: z.string().max(63),
  /** The manager the VM was created through (its origin). */
  manager: z.string().max(512),
  /** The CA fingerprint the receipt was verified with. */
  ca: z.string().max(80),
  nonce: NonceSchema,
  image: z.string().max(256),
  expectKernel: z.string().max(80).optional(),
  receipt: z.string().max(16_384),
  hostCertificate: z.string().max(8192),
  loginKey: z.strictObject({ publicKey: z.string().max(1024), publicKeyFile: z.string().max(4096), privateKeyFile: z.string().max(4096).optional() }),
  createdAt: z.string().max(64),
  verifiedAt: z.string().max(64),
});
export type VmRecord = z.infer<typeof VmRecordSchema>;

const recordFile = (paths: ClientPaths, vmId: string): string => join(paths.vms, `${IdSchema.parse(vmId)}.json`);

export async function writeVmRecord(paths: ClientPaths, record: VmRecord): Promise<void> {
  await ensureClientDir(paths);
  await writeFileAtomic(recordFile(paths, record.vmId), `${JSON.stringify(VmRecordSchema.parse(record), null, 2)}\n`, 0o644);
}

/** The record of `vmId`; undefined when this client never verified that VM (or the file is not a record). */
export async function readVmRecord(paths: ClientPaths, vmId: string): Promise<VmRecord | undefined> {
  if (!IdSchema.safeParse(vmId).success) return undefined;
  let text: string;
  try {
    text = await readFile(recordFile(paths, vmId), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const parsed = VmRecordSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Every record, by VM id. */
export async function listVmRecords(paths: ClientPaths): Promise<Map<string, VmRecord>> {
  const out = new Map<string, VmRecord>();
  let files: string[];
  try {
    files = await readdir(paths.vms);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  for (const f of files.filter((f) => f.endsWith('.json')).slice(0, 10_000)) {
    const record = await readVmRecord(paths, f.slice(0, -5));
    if (record !== undefined) out.set(record.vmId, record);
  }
  return out;
}

export async function removeVmRecord(paths: ClientPaths, vmId: string): Promise<void> {
  if (IdSchema.safeParse(vmId).success) await rm(recordFile(paths, vmId), { force: true });
}
