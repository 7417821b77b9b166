// Issuing a receipt (DESIGN.md §4.3): a JWT with header {alg, typ: "eat+jwt", kid} over
// claims that match ReceiptClaimsSchema, signed by the CA with ES256 or EdDSA.
import { SignJWT } from 'jose';
import type { KeyObject } from 'node:crypto';
import { RECEIPT_TYP, ReceiptClaimsSchema, describeIssues, type ReceiptClaims } from '../../protocol/messages.js';
import { receiptAlgorithmForKey, type ReceiptAlgorithm } from './jwks.js';

export interface ReceiptSigner {
  readonly privateKey: KeyObject;
  readonly alg: ReceiptAlgorithm;
  /** The key id published in the CA's JWK Set (receiptKeyId(key) by default there). */
  readonly kid: string;
}

/** Signs `claims` as a receipt. Claims that do not match the schema are a caller bug (TypeError). */
export async function issueReceipt(claims: ReceiptClaims, signer: ReceiptSigner): Promise<string> {
  const parsed = ReceiptClaimsSchema.safeParse(claims);
  if (!parsed.success) throw new TypeError(`receipt claims do not match ReceiptClaimsSchema: ${describeIssues(parsed.error)}`);
  if (parsed.data.exp <= parsed.data.iat) throw new TypeError('a receipt must expire after it is issued');
  if (signer.privateKey.type !== 'private') throw new TypeError('the receipt signer needs a private key');
  if (receiptAlgorithmForKey(signer.privateKey) !== signer.alg) throw new TypeError(`the signer key does not sign ${signer.alg}`);
  if (signer.kid.length === 0 || signer.kid.length > 128) throw new TypeError('kid must be 1..128 characters');
  return new SignJWT(parsed.data).setProtectedHeader({ alg: signer.alg, typ: RECEIPT_TYP, kid: signer.kid }).sign(signer.privateKey);
}
