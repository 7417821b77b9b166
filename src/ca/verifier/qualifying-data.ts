// What a launch quote's extraData must equal: SHA-256 of the RFC 8785 canonical JSON of
// the claims (DESIGN.md §4.2). canonicalBytes serialises any value (sorting keys, checking
// every string for lone surrogates); claims that passed LaunchClaimsSchema have known keys
// and ASCII strings only, so their canonical text can be written directly, keys in RFC 8785
// order (UTF-16 code units), each string through JSON.stringify (RFC 8785 §3.2.2.2), the
// time an integer. ~3 µs less per evidence; test/ca/qualifying-data.test.ts holds it equal
// to canonicalBytes.
import { createHash } from 'node:crypto';
import type { LaunchClaims } from '../../protocol/messages.js';

/** Every LaunchClaims key, sorted as RFC 8785 sorts them. */
const KEYS = ['authorizedKeyFp', 'cmdline', 'hostname', 'initrd', 'kernel', 'nodeId', 'nonce', 'sshHostKey', 'time', 'vmId'] as const satisfies ReadonlyArray<keyof LaunchClaims>;

/** The canonical JSON text of schema-valid claims. */
export function canonicalClaims(claims: LaunchClaims): string {
  let out = '{';
  for (const key of KEYS) {
    const value = claims[key];
    if (value === undefined) continue;
    if (out.length > 1) out += ',';
    // time is an integer (UnixTimeSchema): String() is the ECMAScript form RFC 8785 uses, -0 aside
    out += `"${key}":${typeof value === 'number' ? (Object.is(value, -0) ? '0' : String(value)) : JSON.stringify(value)}`;
  }
  return `${out}}`;
}

/** SHA-256 of canonicalClaims(claims). */
export function claimsQualifyingData(claims: LaunchClaims): Buffer {
  return createHash('sha256').update(canonicalClaims(claims), 'utf8').digest();
}
