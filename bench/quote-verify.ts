// Quote verification throughput: verifyQuote (decode + AK lookup + TPMT_SIGNATURE parse +
// ECDSA P-256 verify + magic/type + TPMS_ATTEST parse + extraData + PCR selection + PCR
// digest) vs raw crypto.verify of the same signatures over the same TPMS_ATTEST bytes, in
// the same run, single thread. Goal: ratio >= 0.8.
import { createHash, verify, type KeyObject } from 'node:crypto';
import { toBase64url } from '../src/protocol/base64url.js';
import type { TpmQuote } from '../src/protocol/messages.js';
import { PLATFORM_PCRS } from '../src/protocol/pcrs.js';
import { TPM_ALG, TPM_RH } from '../src/tpm/constants.js';
import { publicKeyOf } from '../src/tpm/crypto/public-key.js';
import { ecdsaSignatureToDer } from '../src/tpm/crypto/signature.js';
import { verifyQuote } from '../src/tpm/quote/verify.js';
import { TpmEngine } from '../src/tpm/sim/engine.js';
import { MemoryStateStore } from '../src/tpm/sim/store.js';
import { parseTpmtSignature } from '../src/tpm/structures/signature.js';
import { parseTpmtPublic } from '../src/tpm/structures/public.js';
import { AK_TEMPLATE_ECC_P256, EK_TEMPLATE_ECC_P256 } from '../src/tpm/templates.js';
import type { BenchContext } from './lib/report.js';

const QUOTES = 256;
const ROUNDS = 15;
const ROUND_MS = 300;

interface Sample {
  readonly wire: TpmQuote;
  readonly nonce: Buffer;
  readonly attest: Buffer;
  readonly derSignature: Buffer;
}

/** Runs `fn` over the samples for about `ms` milliseconds; operations per second. */
function rate(samples: readonly Sample[], ms: number, fn: (s: Sample) => void): number {
  const start = process.hrtime.bigint();
  let n = 0;
  let elapsed = 0;
  while (elapsed < ms) {
    for (const s of samples) fn(s);
    n += samples.length;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return (n * 1000) / elapsed;
}

export async function run(ctx: BenchContext): Promise<void> {
  const engine = await TpmEngine.create(new MemoryStateStore(), { manufacturer: 'TLSW', firmwareVersion: 1n });
  await engine.startup();
  const ek = await engine.createPersistent(TPM_RH.ENDORSEMENT, EK_TEMPLATE_ECC_P256, 0x81010002);
  const ak = await engine.createPersistent(ek.handle, AK_TEMPLATE_ECC_P256, 0x81010102);
  for (const p of PLATFORM_PCRS) engine.pcrExtend(p, createHash('sha256').update(`pcr ${p}`).digest());
  const pcrs = { sha256: Object.fromEntries(PLATFORM_PCRS.map((p) => [String(p), engine.pcrRead(p).toString('hex')])) };

  const samples: Sample[] = [];
  for (let i = 0; i < QUOTES; i++) {
    const nonce = createHash('sha256').update(`claims ${i}`).digest();
    const q = engine.quote(ak.handle, PLATFORM_PCRS, nonce);
    const sig = parseTpmtSignature(q.signature);
    if (sig.sigAlg !== TPM_ALG.ECDSA) throw new Error('expected ECDSA');
    samples.push({ wire: { attest: toBase64url(q.attest), signature: toBase64url(q.signature), pcrs }, nonce, attest: q.attest, derSignature: ecdsaSignatureToDer(sig.signatureR, sig.signatureS) });
  }
  const akPublic = ak.publicBytes;
  const key: KeyObject = publicKeyOf(parseTpmtPublic(akPublic));

  const ours = (s: Sample): void => {
    verifyQuote(s.wire, { akPublic, qualifyingData: s.nonce });
  };
  const raw = (s: Sample): void => {
    if (!verify('sha256', s.attest, key, s.derSignature)) throw new Error('raw verify failed');
  };
  // Warm up both paths (JIT, key cache). Then paired rounds, alternating which side runs
  // first: on a shared machine the load changes from second to second, and the two halves
  // of a pair see nearly the same load, so the median of the per-pair ratios is the figure.
  rate(samples, 300, ours);
  rate(samples, 300, raw);
  const pairs: { ours: number; raw: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2 === 0) {
      const o = rate(samples, ROUND_MS, ours);
      pairs.push({ ours: o, raw: rate(samples, ROUND_MS, raw) });
    } else {
      const b = rate(samples, ROUND_MS, raw);
      pairs.push({ ours: rate(samples, ROUND_MS, ours), raw: b });
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  ctx.report({
    bench: 'quote-verify',
    metric: 'quotes verified per second (ECDSA P-256 AK, 4 PCRs)',
    value: median(pairs.map((p) => p.ours)),
    unit: 'quotes/s',
    baseline: median(pairs.map((p) => p.raw)),
    ratio: median(pairs.map((p) => p.ours / p.raw)),
    note: `baseline: crypto.verify of the same signatures (DER) over the same TPMS_ATTEST bytes; ${QUOTES} distinct quotes; ${ROUNDS} paired rounds of ${ROUND_MS} ms, medians (ratio = median of per-pair ratios); one thread`,
    goal: 'ratio >= 0.8',
  });
}
