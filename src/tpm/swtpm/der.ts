// The DER certificate inside an NV index: manufacturers may pad the index beyond the
// certificate, so the outer SEQUENCE's length (X.690 §8.1.3) says where it ends.
import { TrustlaunchError } from '../../protocol/errors.js';

/** The bytes of the DER SEQUENCE at the start of `bytes` (padding after it dropped; only 0x00/0xff padding allowed). */
export function derCertificate(bytes: Uint8Array, what: string): Buffer {
  const b = Buffer.from(bytes);
  const bad = (why: string): TrustlaunchError => new TrustlaunchError('MALFORMED_CERTIFICATE', `${what}: ${why}`);
  if (b.length < 2 || b[0] !== 0x30) throw bad('does not start with a DER SEQUENCE');
  const first = b[1] ?? 0;
  let length: number;
  let header: number;
  if (first < 0x80) {
    length = first;
    header = 2;
  } else {
    const n = first & 0x7f;
    if (n === 0 || n > 3 || b.length < 2 + n) throw bad('unsupported DER length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (b[2 + i] ?? 0);
    header = 2 + n;
  }
  const total = header + length;
  if (total > b.length) throw bad(`the SEQUENCE needs ${total} bytes, the index has ${b.length}`);
  if (b.subarray(total).some((x) => x !== 0x00 && x !== 0xff)) throw bad('bytes other than padding follow the certificate');
  return Buffer.from(b.subarray(0, total));
}
