// Identifiers the manager makes: a prefix and 80 random bits in lowercase base32, so they
// are DNS labels (VM ids become hostnames and SSH certificate principals).
import { randomBytes } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31] ?? '';
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31] ?? '';
  return out;
}

/** `prefix-` and 16 base32 characters (80 bits). */
export function newId(prefix: 'vm' | 'usr' | 'jt'): string {
  return `${prefix}-${base32(randomBytes(10))}`;
}

/** What newId('vm') makes; VM names of this shape are refused so names and ids never collide. */
export const VM_ID = /^vm-[a-z2-7]{16}$/;
