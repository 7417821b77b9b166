// The raw crypto bound of the CA benchmark: per receipt one ECDSA P-256 verification (the
// quote), one receipt signature (ES256 or EdDSA) and one Ed25519 signature (the host
// certificate), on messages of the real sizes, with one worker thread per CPU, nothing
// else. The end-to-end figure is compared with this, measured in the same run.
import { Worker } from 'node:worker_threads';

// Plain JavaScript for the threads: no TypeScript loader needed, nothing of ours measured.
const LOOP = `
const { parentPort, workerData } = require('node:worker_threads');
const { generateKeyPairSync, sign, verify, randomBytes } = require('node:crypto');
const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const receipt = workerData.alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
const ssh = generateKeyPairSync('ed25519');
const attest = randomBytes(145);           // a TPMS_ATTEST of a quote over 4 PCRs
const quoteSig = sign('sha256', attest, ak.privateKey);
const jwtInput = randomBytes(940);          // header.payload of an affirming receipt
const certBody = randomBytes(330);          // the signed part of an Ed25519 host certificate
const until = Date.now() + workerData.ms;
let n = 0;
while (Date.now() < until) {
  for (let i = 0; i < 20; i++) {
    if (!verify('sha256', attest, ak.publicKey, quoteSig)) throw new Error('verify');
    if (workerData.alg === 'ES256') sign('sha256', jwtInput, { key: receipt.privateKey, dsaEncoding: 'ieee-p1363' });
    else sign(null, jwtInput, receipt.privateKey);
    sign(null, certBody, ssh.privateKey);
  }
  n += 20;
}
parentPort.postMessage(n);
`;

/** Receipts per second the crypto alone allows on `threads` threads for `ms` milliseconds. */
export async function cryptoBound(threads: number, ms: number, alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<number> {
  const counts = await Promise.all(
    Array.from({ length: threads }, () => {
      const w = new Worker(LOOP, { eval: true, workerData: { ms, alg } });
      return new Promise<number>((resolve, reject) => {
        w.once('message', (n: number) => resolve(n));
        w.once('error', reject);
      }).finally(() => void w.terminate());
    }),
  );
  return (counts.reduce((a, b) => a + b, 0) * 1000) / ms;
}
