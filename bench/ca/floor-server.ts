// The transport floor of the CA benchmark: an HTTPS server with the CA's own TLS identity
// that answers POST /v1/evidence with a canned body the size of a real affirming answer —
// no routing framework, no parsing, no judging, no signing, no storage. The load process
// driven against it the same way shows what TLS, HTTP/1.1 and the load generator alone
// cost on this machine, measured in the same run as the CA. Run as a process; prints
// `{"url": …}` once listening.
//
// With `--crypto` it also does, for every request, the crypto of a receipt as the crypto
// bound counts it (bench/ca/receipt-crypto.ts) on its one thread: several of these
// processes side by side are the most a CA built on node:https and node:crypto could do
// with nothing else — no parsing, judging, storage or messages between threads.
//
//   node --import tsx bench/ca/floor-server.ts CA_DIR [--crypto]
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:https';
import { loadCaDirectory } from '../../src/ca/directory.js';
import { serverTlsOptions } from '../../src/crypto/tls.js';
import { receiptCrypto } from './receipt-crypto.js';

/** Sizes of an affirming answer's parts in the benchmark (receipt JWT, host certificate line). */
const RECEIPT_CHARS = 961;
const CERTIFICATE_BASE64_CHARS = 528;

const material = await loadCaDirectory(process.argv[2] ?? '');
const tls = serverTlsOptions(material.tls.chain, material.tls.privateKey);
const answer = Buffer.from(
  JSON.stringify({
    receipt: randomBytes(RECEIPT_CHARS).toString('base64url').slice(0, RECEIPT_CHARS),
    status: 'affirming',
    hostCertificate: `ssh-ed25519-cert-v01@openssh.com ${randomBytes(CERTIFICATE_BASE64_CHARS).toString('base64').slice(0, CERTIFICATE_BASE64_CHARS)}`,
  }),
);

const cryptoPerRequest = process.argv.includes('--crypto') ? receiptCrypto() : undefined;

const server = createServer({ cert: tls.cert, key: tls.key, minVersion: tls.minVersion }, (req, res) => {
  let bytes = 0;
  req.on('data', (chunk: Buffer) => (bytes += chunk.length));
  req.on('end', () => {
    if (req.method !== 'POST' || bytes === 0) {
      res.writeHead(400).end();
      return;
    }
    cryptoPerRequest?.();
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': answer.length });
    res.end(answer);
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  process.stdout.write(`${JSON.stringify({ url: `https://127.0.0.1:${address.port}` })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
