// The TPM's key derivation functions (Part 1 §11.4.10): KDFa, the SP800-108 counter-mode
// KDF with HMAC, and KDFe, the SP800-56A concatenation KDF. Labels carry their NUL.
import { hashSize, tpmHash, tpmHmac } from './hash.js';

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** The label as the TPM hashes it: its octets and one terminating 0x00 (added unless present). */
function labelBytes(label: string): Buffer {
  const b = Buffer.from(label, 'latin1');
  return b.length > 0 && b[b.length - 1] === 0 ? b : Buffer.concat([b, Buffer.alloc(1)]);
}

function truncate(out: Buffer, bits: number): Buffer {
  const bytes = Math.ceil(bits / 8);
  const result = out.subarray(0, bytes);
  // Part 1 §11.4.10.2: when bits is not a multiple of 8, the excess high-order bits are cleared.
  if (bits % 8 !== 0 && result.length > 0) result[0] = (result[0] ?? 0) & (0xff >> (8 - (bits % 8)));
  return Buffer.from(result);
}

/** KDFa (Part 1 §11.4.10.2): K(i) = HMAC(key, [i]₃₂ ‖ label ‖ 00 ‖ contextU ‖ contextV ‖ [bits]₃₂). */
export function kdfa(hashAlg: number, key: Uint8Array, label: string, contextU: Uint8Array, contextV: Uint8Array, bits: number): Buffer {
  if (!Number.isInteger(bits) || bits <= 0 || bits > 65536) throw new RangeError(`KDFa: ${bits} bits`);
  const lab = labelBytes(label);
  const blocks: Buffer[] = [];
  const size = hashSize(hashAlg);
  for (let i = 1, got = 0; got < bits / 8; i++, got += size) {
    blocks.push(tpmHmac(hashAlg, key, u32(i), lab, contextU, contextV, u32(bits)));
  }
  return truncate(Buffer.concat(blocks), bits);
}

/** KDFe (Part 1 §11.4.10.3): K(i) = H([i]₃₂ ‖ Z ‖ use ‖ 00 ‖ partyUInfo ‖ partyVInfo). */
export function kdfe(hashAlg: number, z: Uint8Array, use: string, partyUInfo: Uint8Array, partyVInfo: Uint8Array, bits: number): Buffer {
  if (!Number.isInteger(bits) || bits <= 0 || bits > 65536) throw new RangeError(`KDFe: ${bits} bits`);
  const lab = labelBytes(use);
  const blocks: Buffer[] = [];
  const size = hashSize(hashAlg);
  for (let i = 1, got = 0; got < bits / 8; i++, got += size) {
    blocks.push(tpmHash(hashAlg, u32(i), z, lab, partyUInfo, partyVInfo));
  }
  return truncate(Buffer.concat(blocks), bits);
}
