// The raw crypto bound of the CA benchmark: per receipt one ECDSA P-256 verification (the
// quote), one receipt signature (ES256 or EdDSA) and one Ed25519 signature (the host
// certificate), on messages of the real sizes, with one worker thread per CPU, nothing
// else. The end-to-end figure is compared with this, measured in the same run. Each thread
// also reads its own CPU time around the loop (/proc/thread-self/stat), so the crypto's CPU
// cost per receipt is known even when other processes take turns on the same CPUs.
import { Worker } from 'node:worker_threads';

// Plain JavaScript for the threads (the steps of receipt-crypto.ts): no TypeScript loader
// needed, nothing of ours measured.
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
// CPU seconds (user + system) of this thread so far.
const { readFileSync } = require('node:fs');
const cpu = () => {
  const stat = readFileSync('/proc/thread-self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const cpu0 = cpu();
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
parentPort.postMessage({ n, cpuSeconds: cpu() - cpu0 });
`;

export interface CryptoBound {
  /** Receipts per second the crypto alone reached on the threads, wall clock. */
  readonly perSecond: number;
  /** CPU-µs of crypto per receipt (the threads' own CPU time over their receipts). */
  readonly cpuMicrosPerReceipt: number;
}

/** What the crypto alone allows on `threads` threads for `ms` milliseconds. */
export async function cryptoBound(threads: number, ms: number, alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<CryptoBound> {
  const results = await Promise.all(
    Array.from({ length: threads }, () => {
      const w = new Worker(LOOP, { eval: true, workerData: { ms, alg } });
      return new Promise<{ n: number; cpuSeconds: number }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      }).finally(() => void w.terminate());
    }),
  );
  const n = results.reduce((a, r) => a + r.n, 0);
  const cpuSeconds = results.reduce((a, r) => a + r.cpuSeconds, 0);
  return { perSecond: (n * 1000) / ms, cpuMicrosPerReceipt: (cpuSeconds / n) * 1e6 };
}
