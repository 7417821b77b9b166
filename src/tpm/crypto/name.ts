// Names and qualified names (Part 1 §16 "Names"): Name = nameAlg ‖ H_nameAlg(TPMT_PUBLIC);
// a permanent handle's Name is the handle; QN(B) = nameAlg ‖ H_nameAlg(QN(parent) ‖ Name(B)).
import { TPM_ALG } from '../constants.js';
import { parseTpmtPublic, marshalTpmtPublic, type TpmtPublic } from '../structures/public.js';
import { tpmHash } from './hash.js';

function algPrefix(alg: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(alg);
  return b;
}

/** Name of an object from its TPMT_PUBLIC bytes (hashed as given; the public area is parsed for nameAlg). */
export function objectName(publicArea: Uint8Array | TpmtPublic): Buffer {
  const bytes = publicArea instanceof Uint8Array ? publicArea : marshalTpmtPublic(publicArea);
  const nameAlg = publicArea instanceof Uint8Array ? parseTpmtPublic(publicArea).nameAlg : publicArea.nameAlg;
  if (nameAlg === TPM_ALG.NULL) throw new RangeError('an object with nameAlg TPM_ALG_NULL has no digest Name');
  return Buffer.concat([algPrefix(nameAlg), tpmHash(nameAlg, bytes)]);
}

/** The Name of a permanent handle (TPM_RH_ENDORSEMENT, …): the 4-byte handle. */
export function handleName(handle: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(handle >>> 0);
  return b;
}

/** QN(object) from its parent's qualified name (for a primary key: the hierarchy handle's Name). */
export function qualifiedName(parentQualifiedName: Uint8Array, name: Uint8Array, nameAlg: number): Buffer {
  return Buffer.concat([algPrefix(nameAlg), tpmHash(nameAlg, parentQualifiedName, name)]);
}
