// The `schema` step's fast path: a hand-written reader of what JSON.parse made of an
// evidence body, for the hot path only. It returns the value only when EvidenceSchema
// (src/protocol/messages.ts) would accept it and return an equal value; for anything else
// — invalid input, and the odd valid input it does not bother with (a `__proto__` key, which
// zod strips) — it returns undefined and the pipeline asks EvidenceSchema, which stays the
// one authority on what is accepted and on every refusal message. zod costs ~15 µs per
// evidence here (it copies every object and runs each check through its machinery), this
// ~2 µs. test/ca/evidence-reader.test.ts holds the two to that contract with property tests.
import type { Evidence } from '../../protocol/messages.js';

// The patterns and bounds of the schemas, each as in src/protocol/messages.ts.
const ID = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const NONCE = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const HOSTNAME_MAX = 253;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const SSH_PUBLIC_KEY = /^(ssh-ed25519|ecdsa-sha2-nistp256) [A-Za-z0-9+/]+={0,2}(?: [\x20-\x7e]{0,200})?$/;
const SSH_PUBLIC_KEY_MAX = 1024;
const SSH_FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;
const HEX32 = /^[0-9a-f]{64}$/;
const PCR_INDEX_KEY = /^(?:[0-9]|1[0-9]|2[0-3])$/;
const UNIX_TIME_MAX = 2 ** 40;
const B64URL = /^[A-Za-z0-9_-]*$/;
/** base64urlSchema(n) allows ceil(4n/3) characters. */
const QUOTE_PART_MAX_CHARS = Math.ceil((1024 * 4) / 3);
const EVENT_MAX_CHARS = Math.ceil((16_384 * 4) / 3);
const EVENT_LOG_MAX = 1024;
const DIGESTS_MAX = 4;

type Json = Record<string, unknown>;

/** A plain object (as JSON.parse makes them) whose keys are all in `allowed` and include `required`. */
function isObjectWith(v: unknown, required: readonly string[], optional: readonly string[] = []): v is Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  let present = 0;
  for (const key of Object.keys(v)) {
    if (required.includes(key)) present++;
    else if (!optional.includes(key)) return false;
  }
  return present === required.length;
}

function matches(v: unknown, pattern: RegExp, maxLength = Infinity): v is string {
  return typeof v === 'string' && v.length <= maxLength && pattern.test(v);
}

const B64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * base64url without padding, canonical, at most `maxChars` characters — what isBase64url
 * decides by decoding and encoding again, decided without either: a text of the alphabet
 * is canonical exactly when its length is not 1 mod 4 and the bits its last character
 * carries beyond the last whole byte (4 of them after 2 characters of a group, 2 after 3)
 * are zero.
 */
function isBase64url(v: unknown, maxChars: number): v is string {
  if (typeof v !== 'string' || v.length > maxChars || !B64URL.test(v)) return false;
  const rest = v.length % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  const last = B64URL_ALPHABET.indexOf(v.charAt(v.length - 1));
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

function isInteger(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

const CLAIMS_REQUIRED = ['nodeId', 'vmId', 'nonce', 'hostname', 'kernel', 'sshHostKey', 'time'] as const;
const CLAIMS_OPTIONAL = ['initrd', 'cmdline', 'authorizedKeyFp'] as const;

function isClaims(c: unknown): boolean {
  return (
    isObjectWith(c, CLAIMS_REQUIRED, CLAIMS_OPTIONAL) &&
    matches(c['nodeId'], ID) &&
    matches(c['vmId'], ID) &&
    matches(c['nonce'], NONCE) &&
    matches(c['hostname'], HOSTNAME, HOSTNAME_MAX) &&
    matches(c['kernel'], DIGEST) &&
    (!Object.hasOwn(c, 'initrd') || matches(c['initrd'], DIGEST)) &&
    (!Object.hasOwn(c, 'cmdline') || matches(c['cmdline'], DIGEST)) &&
    matches(c['sshHostKey'], SSH_PUBLIC_KEY, SSH_PUBLIC_KEY_MAX) &&
    (!Object.hasOwn(c, 'authorizedKeyFp') || matches(c['authorizedKeyFp'], SSH_FINGERPRINT)) &&
    isInteger(c['time'], 0, UNIX_TIME_MAX)
  );
}

function isQuote(q: unknown): boolean {
  if (!isObjectWith(q, ['attest', 'signature', 'pcrs'])) return false;
  if (!isBase64url(q['attest'], QUOTE_PART_MAX_CHARS) || !isBase64url(q['signature'], QUOTE_PART_MAX_CHARS)) return false;
  const pcrs = q['pcrs'];
  if (!isObjectWith(pcrs, ['sha256'])) return false;
  const bank = pcrs['sha256'];
  if (typeof bank !== 'object' || bank === null || Array.isArray(bank)) return false;
  for (const [k, v] of Object.entries(bank)) if (!PCR_INDEX_KEY.test(k) || !matches(v, HEX32)) return false;
  return true;
}

function isEvent(e: unknown): boolean {
  if (!isObjectWith(e, ['pcrIndex', 'eventType', 'digests', 'event'])) return false;
  if (!isInteger(e['pcrIndex'], 0, 23) || !isInteger(e['eventType'], 0, 0xffff_ffff) || !isBase64url(e['event'], EVENT_MAX_CHARS)) return false;
  const digests = e['digests'];
  if (!Array.isArray(digests) || digests.length < 1 || digests.length > DIGESTS_MAX) return false;
  return digests.every((d) => isObjectWith(d, ['alg', 'digest']) && d['alg'] === 'sha256' && matches(d['digest'], HEX32));
}

/**
 * `json` (JSON.parse output) as Evidence when EvidenceSchema would accept it with an equal
 * value; otherwise undefined — ask EvidenceSchema.
 */
export function readEvidence(json: unknown): Evidence | undefined {
  if (!isObjectWith(json, ['claims', 'quote', 'eventLog'])) return undefined;
  const log = json['eventLog'];
  if (!isClaims(json['claims']) || !isQuote(json['quote']) || !Array.isArray(log) || log.length > EVENT_LOG_MAX || !log.every(isEvent)) return undefined;
  return json as unknown as Evidence;
}
