// Judgements as a CA judge thread makes them (signed, not stored), and the node they name,
// for the tests of the CA's group commit: through Kysely (test/ca/store.test.ts) and on
// the SQLite commit thread's own connection (test/ca/commit-sqlite.test.ts).
import type { Kysely } from 'kysely';
import { Issuer } from '../../src/ca/issuer/issuer.js';
import { insertNode } from '../../src/ca/store/nodes.js';
import type { CaSchema } from '../../src/ca/store/schema.js';
import type { Judgement } from '../../src/ca/verifier/judge.js';
import { formatSshPublicKey, generateKeyPair, receiptKeyId } from '../../src/crypto/index.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import type { LaunchClaims } from '../../src/protocol/messages.js';
import { newNonce } from '../../src/protocol/nonce.js';

const receiptKey = generateKeyPair('ecdsa-p256');
export const issuer = new Issuer({ issuer: 'test-ca', receiptKey: receiptKey.privateKey, receiptKeyId: receiptKeyId(receiptKey.publicKey), sshCaKey: generateKeyPair('ed25519').privateKey, receiptLifetimeSeconds: 600 });
const hostKey = formatSshPublicKey(generateKeyPair('ed25519').publicKey);

/** Launch claims of node-1/vm-1 with a fresh nonce, now. */
export function claims(over: Partial<LaunchClaims> = {}): LaunchClaims {
  return { nodeId: 'node-1', vmId: 'vm-1', nonce: newNonce(), hostname: 'vm-1.test', kernel: sha256Digest('k'), sshHostKey: hostKey, time: Math.floor(Date.now() / 1000), ...over };
}

/** An affirming judgement of `c`. */
export function affirmed(c: LaunchClaims, allowlist = 'kernel'): Judgement {
  const blob = Buffer.from(c.sshHostKey.split(' ')[1] as string, 'base64');
  return { at: Date.now(), evidenceHash: sha256Digest(c.nonce), claims: c, allowlist, platform: 'p', issued: issuer.affirm(c, { type: 'ssh-ed25519', blob }, allowlist, Date.now()) };
}

/** A judgement refusing `c` at `step` with `code`. */
export function refusedAt(c: LaunchClaims, step: string, code: string): Judgement {
  const refusal = { step, code, message: `refused at ${step}` };
  return { at: Date.now(), evidenceHash: sha256Digest(`${c.nonce}${step}`), claims: c, refusal, issued: issuer.contraindicate(c, refusal, undefined, Date.now()) };
}

/** Registers node `id` (placeholder keys: the commit path never reads them). */
export async function addNode(db: Kysely<CaSchema>, id: string): Promise<void> {
  await insertNode(db, { id, platform: 'p', registeredAt: Date.now(), ekPublic: Buffer.from('ek'), ekCertificate: Buffer.from('cert'), akPublic: Buffer.from('ak'), akName: Buffer.from('name') });
}
