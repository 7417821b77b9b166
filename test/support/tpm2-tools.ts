// tpm2-tools as an oracle: running the tools, and writing/reading the file formats they
// use, so tests (and the TPM-client engineer's swtpm tests) can hand our structures to
// tools nobody here wrote.
//   tpm2_checkquote -f   "serialized" PCR file: the TSS C structs TPML_PCR_SELECTION and
//                        TPML_DIGEST dumped little-endian (tpm2-tools lib/pcr.c)
//   tpm2_makecredential -o / tpm2_activatecredential -i: 0xBADCC0DE ‖ version 1 ‖
//                        TPM2B_ID_OBJECT ‖ TPM2B_ENCRYPTED_SECRET (big-endian)
//   -u of tpm2_makecredential / tpm2_loadexternal: TPM2B_PUBLIC
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TpmReader } from '../../src/tpm/marshal/reader.js';
import { TpmWriter } from '../../src/tpm/marshal/writer.js';
import { publicKeyOf } from '../../src/tpm/crypto/public-key.js';
import { marshalTpm2bPublic, parseTpmtPublic } from '../../src/tpm/structures/public.js';
import { Tpm2bEncryptedSecret, Tpm2bIdObject } from '../../src/tpm/structures/sized.js';
import { TPM_ALG } from '../../src/tpm/constants.js';
import { requireCommand } from './system.js';

export interface ToolResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one tpm2-tools command (30 s bound); `env` adds e.g. TPM2TOOLS_TCTI. */
export function tpm2(tool: string, args: readonly string[], env: Record<string, string> = {}): ToolResult {
  requireCommand(tool);
  const r = spawnSync(tool, args, { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } });
  if (r.error !== undefined) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Like tpm2() but throws with the tool's stderr when it fails. */
export function tpm2ok(tool: string, args: readonly string[], env: Record<string, string> = {}): string {
  const r = tpm2(tool, args, env);
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

// TSS2 sizes (tss2_tpm2_types.h): TPM2_NUM_PCR_BANKS 16, TPM2_PCR_SELECT_MAX 4, TPML_DIGEST holds 8.
const TSS_PCR_BANKS = 16;
const TSS_PCR_SELECT_MAX = 4;
const TSS_DIGESTS_PER_LIST = 8;
const TSS_TPMU_HA = 64;

/** The "serialized" PCR file of tpm2_quote -o / tpm2_checkquote -f for SHA-256 PCR values (ascending indices). */
export function tssPcrsFile(values: ReadonlyMap<number, Uint8Array>): Buffer {
  const indices = [...values.keys()].sort((a, b) => a - b);
  const w = new TpmWriter(1024);
  // TPML_PCR_SELECTION { UINT32 count; TPMS_PCR_SELECTION pcrSelections[16]; }, each 8 bytes with padding.
  w.u32le(1);
  for (let bank = 0; bank < TSS_PCR_BANKS; bank++) {
    const bitmap = Buffer.alloc(TSS_PCR_SELECT_MAX);
    if (bank === 0) for (const i of indices) bitmap[i >> 3] = (bitmap[i >> 3] ?? 0) | (1 << (i & 7));
    w.u16le(bank === 0 ? TPM_ALG.SHA256 : 0).u8(bank === 0 ? 3 : 0).bytes(bitmap).u8(0);
  }
  // UINT32 count of TPML_DIGEST, then each { UINT32 count; TPM2B_DIGEST digests[8]; } (TPM2B_DIGEST = UINT16 + 64).
  const lists: number[][] = [];
  for (let i = 0; i < indices.length; i += TSS_DIGESTS_PER_LIST) lists.push(indices.slice(i, i + TSS_DIGESTS_PER_LIST));
  w.u32le(lists.length);
  for (const list of lists) {
    w.u32le(list.length);
    for (let k = 0; k < TSS_DIGESTS_PER_LIST; k++) {
      const v = list[k] === undefined ? Buffer.alloc(0) : Buffer.from(values.get(list[k] as number) ?? Buffer.alloc(0));
      w.u16le(v.length).bytes(v).bytes(Buffer.alloc(TSS_TPMU_HA - v.length));
    }
  }
  return w.finish();
}

/** Reads a "serialized" PCR file (SHA-256 bank only) back into index → value. */
export function parseTssPcrsFile(bytes: Uint8Array): Map<number, Buffer> {
  const r = new TpmReader(bytes, { what: 'tpm2-tools PCR file' });
  const count = r.u32le('count');
  const selected: number[] = [];
  for (let bank = 0; bank < TSS_PCR_BANKS; bank++) {
    const hash = r.u16le('hash');
    const size = r.u8('sizeofSelect');
    const bitmap = r.bytes(TSS_PCR_SELECT_MAX, 'pcrSelect');
    r.u8('padding');
    if (bank >= count) continue;
    if (hash !== TPM_ALG.SHA256) throw new Error('only the SHA-256 bank is read here');
    for (let i = 0; i < size * 8; i++) if (((bitmap[i >> 3] ?? 0) >> (i & 7)) & 1) selected.push(i);
  }
  const lists = r.u32le('lists');
  const values: Buffer[] = [];
  for (let l = 0; l < lists; l++) {
    const n = r.u32le('digests.count');
    for (let k = 0; k < TSS_DIGESTS_PER_LIST; k++) {
      const size = r.u16le('digest.size');
      const buf = r.bytes(TSS_TPMU_HA, 'digest.buffer');
      if (k < n) values.push(Buffer.from(buf.subarray(0, size)));
    }
  }
  r.end();
  return new Map(selected.map((i, k) => [i, values[k] ?? Buffer.alloc(0)]));
}

const CREDENTIAL_MAGIC = 0xbadcc0de;

/** The file tpm2_makecredential -o writes and tpm2_activatecredential -i reads. */
export function credentialFile(credentialBlob: Uint8Array, encryptedSecret: Uint8Array): Buffer {
  const w = new TpmWriter(512);
  w.u32(CREDENTIAL_MAGIC).u32(1);
  Tpm2bIdObject.write(w, credentialBlob);
  Tpm2bEncryptedSecret.write(w, encryptedSecret);
  return w.finish();
}

export function parseCredentialFile(bytes: Uint8Array): { credentialBlob: Uint8Array; encryptedSecret: Uint8Array } {
  const r = new TpmReader(bytes, { what: 'tpm2-tools credential file' });
  if (r.u32('magic') !== CREDENTIAL_MAGIC) r.fail('magic', 'not 0xBADCC0DE');
  if (r.u32('version') !== 1) r.fail('version', 'not 1');
  const credentialBlob = Tpm2bIdObject.read(r);
  const encryptedSecret = Tpm2bEncryptedSecret.read(r);
  r.end();
  return { credentialBlob, encryptedSecret };
}

/** TPM2B_PUBLIC file bytes (tpm2-tools' "tss" public format) for a TPMT_PUBLIC. */
export function tssPublicFile(tpmtPublic: Uint8Array): Buffer {
  return marshalTpm2bPublic(parseTpmtPublic(tpmtPublic));
}

/** PEM SubjectPublicKeyInfo of an RSA or ECC TPMT_PUBLIC. */
export function publicPem(tpmtPublic: Uint8Array): string {
  return publicKeyOf(parseTpmtPublic(tpmtPublic)).export({ type: 'spki', format: 'pem' }).toString();
}

export interface QuoteFiles {
  readonly akPem: string;
  readonly message: string;
  readonly signature: string;
  readonly pcrs: string;
}

/** Writes what tpm2_checkquote reads: -u AK PEM, -m TPMS_ATTEST, -s TPMT_SIGNATURE (TSS format), -f PCRs. */
export function writeQuoteFiles(dir: string, q: { akPublic: Uint8Array; attest: Uint8Array; signature: Uint8Array; pcrs: ReadonlyMap<number, Uint8Array> }): QuoteFiles {
  const files: QuoteFiles = { akPem: join(dir, 'ak.pem'), message: join(dir, 'quote.msg'), signature: join(dir, 'quote.sig'), pcrs: join(dir, 'quote.pcrs') };
  writeFileSync(files.akPem, publicPem(q.akPublic));
  writeFileSync(files.message, q.attest);
  writeFileSync(files.signature, q.signature);
  writeFileSync(files.pcrs, tssPcrsFile(q.pcrs));
  return files;
}

/** tpm2_checkquote on the files: true when it accepts. */
export function checkQuote(files: QuoteFiles, nonceHex: string): ToolResult {
  return tpm2('tpm2_checkquote', ['-u', files.akPem, '-m', files.message, '-s', files.signature, '-f', files.pcrs, '-g', 'sha256', '-q', nonceHex]);
}

export interface Swtpm {
  readonly dir: string;
  /** Environment for tpm2-tools: TPM2TOOLS_TCTI=swtpm:path=… */
  readonly env: Record<string, string>;
  /** tpm2ok() against this TPM. */
  run(tool: string, args: readonly string[]): string;
  /** tpm2_flushcontext of transient objects, loaded and saved sessions (swtpm has 3 object slots). */
  flush(): void;
  stop(): void;
}

/** A fresh swtpm (TPM 2.0, unix socket, startup-clear) in its own temporary directory. */
export async function startSwtpm(): Promise<Swtpm> {
  requireCommand('swtpm');
  const dir = mkdtempSync(join(tmpdir(), 'tl-swtpm-'));
  const sock = join(dir, 'sock');
  const r = spawnSync(
    'swtpm',
    ['socket', '--tpm2', '--server', `type=unixio,path=${sock}`, '--ctrl', `type=unixio,path=${sock}.ctrl`, '--tpmstate', `dir=${dir}`, '--flags', 'not-need-init,startup-clear', '--daemon', '--pid', `file=${join(dir, 'pid')}`],
    { encoding: 'utf8', timeout: 10_000 },
  );
  if (r.status !== 0) throw new Error(`swtpm did not start: ${r.stderr}`);
  const env = { TPM2TOOLS_TCTI: `swtpm:path=${sock}` };
  const stop = (): void => {
    try {
      process.kill(Number(readFileSync(join(dir, 'pid'), 'utf8').trim()));
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // The first command after start may answer TPM_RC_RETRY; try a few times (bounded).
  for (let i = 0; ; i++) {
    if (tpm2('tpm2_getcap', ['properties-fixed'], env).status === 0) break;
    if (i >= 20) {
      stop();
      throw new Error('swtpm did not answer');
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  const run = (tool: string, args: readonly string[]): string => tpm2ok(tool, args, env);
  const flush = (): void => {
    for (const t of ['-t', '-l', '-s']) run('tpm2_flushcontext', [t]);
  };
  return { dir, env, run, flush, stop };
}
