// A receipt's crypto as the crypto bound counts it (bench/ca/crypto-bound.ts, whose worker
// threads run the same steps as plain JavaScript, so they need no TypeScript loader): one
// ECDSA P-256 verification of a 145-byte TPMS_ATTEST, one ES256 signature over a 940-byte
// JWS input and one Ed25519 signature over a 330-byte certificate body, with fresh keys.
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';

/** A function doing one receipt's crypto per call. */
export function receiptCrypto(): () => void {
  const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const receiptKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const sshCaKey = generateKeyPairSync('ed25519').privateKey;
  const attest = randomBytes(145);
  const quoteSignature = sign('sha256', attest, ak.privateKey);
  const jwsInput = randomBytes(940);
  const certificateBody = randomBytes(330);
  return () => {
    if (!verify('sha256', attest, ak.publicKey, quoteSignature)) throw new Error('verify');
    sign('sha256', jwsInput, { key: receiptKey, dsaEncoding: 'ieee-p1363' });
    sign(null, certificateBody, sshCaKey);
  };
}
