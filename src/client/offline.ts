// `trustlaunch verify RECEIPT --ca-key FILE [--nonce N]`: the same verification pipeline
// (verify.ts) with no network at all, against a CA identity document handed over out of
// band (the CA's identity.json), or the pinned one. RECEIPT is a file (or `-` for stdin)
// holding either the JWT itself, or JSON with `receipt` (and `hostCertificate`): what the
// CA serves for a nonce, or a record from CONFIG/vms/.
import { readFile } from 'node:fs/promises';
import type { PinnedCa } from '../ca/identity.js';
import { MAX_RECEIPT_CHARS } from '../crypto/receipts.js';
import type { Digest } from '../protocol/digest.js';
import { TrustlaunchError } from '../protocol/errors.js';
import { verifyLaunch, type ReceiptBundle, type VerifiedLaunch } from './verify.js';

const MAX_INPUT_BYTES = 256 * 1024;

/** Reads a receipt (or a JSON document holding one) from a file or stdin (`-`). */
export async function readReceiptInput(source: string, stdin: NodeJS.ReadableStream = process.stdin): Promise<ReceiptBundle> {
  let text: string;
  if (source === '-') {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stdin) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      size += buf.length;
      if (size > MAX_INPUT_BYTES) throw new TrustlaunchError('RECEIPT_MALFORMED', `more than ${MAX_INPUT_BYTES} bytes on stdin: not a receipt`);
      chunks.push(buf);
    }
    text = Buffer.concat(chunks).toString('utf8');
  } else {
    try {
      text = await readFile(source, 'utf8');
    } catch (e) {
      throw new TrustlaunchError('MALFORMED_REQUEST', `cannot read ${source}: ${(e as Error).message}`);
    }
    if (text.length > MAX_INPUT_BYTES) throw new TrustlaunchError('RECEIPT_MALFORMED', `${source} is larger than any receipt`);
  }
  return parseReceiptInput(text.trim());
}

export function parseReceiptInput(text: string): ReceiptBundle {
  if (!text.startsWith('{')) return { receipt: text, hostCertificate: undefined };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new TrustlaunchError('RECEIPT_MALFORMED', 'the input starts like JSON but is not JSON', { detail: { check: 'signature', step: 'parse' } });
  }
  const { receipt, hostCertificate } = (json ?? {}) as { receipt?: unknown; hostCertificate?: unknown };
  if (typeof receipt !== 'string' || receipt.length > MAX_RECEIPT_CHARS) throw new TrustlaunchError('RECEIPT_MALFORMED', 'the JSON has no "receipt" string', { detail: { check: 'signature', step: 'parse' } });
  if (hostCertificate !== undefined && (typeof hostCertificate !== 'string' || hostCertificate.length > 8192)) {
    throw new TrustlaunchError('HOST_CERT_INVALID', '"hostCertificate" is not a certificate line', { detail: { check: 'hostCertificate', reason: 'malformed' } });
  }
  return { receipt, hostCertificate };
}

export interface OfflineOptions {
  readonly ca: PinnedCa;
  readonly nonce?: string;
  readonly vmId?: string;
  readonly kernel?: Digest;
  /** A host certificate line from elsewhere (`--host-cert FILE`), overriding one in the input. */
  readonly hostCertificate?: string;
  readonly now?: Date;
}

export async function verifyOffline(bundle: ReceiptBundle, o: OfflineOptions): Promise<VerifiedLaunch> {
  return verifyLaunch(
    o.ca,
    { receipt: bundle.receipt, hostCertificate: o.hostCertificate ?? bundle.hostCertificate },
    {
      ...(o.nonce === undefined ? {} : { nonce: o.nonce }),
      ...(o.vmId === undefined ? {} : { vmId: o.vmId }),
      ...(o.kernel === undefined ? {} : { kernel: o.kernel }),
      ...(o.now === undefined ? {} : { now: o.now }),
    },
  );
}
