// Marshal/unmarshal of every TPM structure: exact round trips (fast-check), trailing bytes
// rejected, bounds enforced before allocation, and random or mutated bytes into every
// unmarshaller giving a typed TPM_PARSE_ERROR or a value, never another exception.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isTrustlaunchError, TrustlaunchError } from '../../src/protocol/errors.js';
import { TPM_ALG } from '../../src/tpm/constants.js';
import type { TpmReader} from '../../src/tpm/marshal/reader.js';
import { parseWhole } from '../../src/tpm/marshal/reader.js';
import { TpmWriter, marshal } from '../../src/tpm/marshal/writer.js';
import { marshalTpmsAttest, parseTpmsAttest, readTpmsClockInfo, writeTpmsClockInfo } from '../../src/tpm/structures/attest.js';
import { marshalTpmsIdObject, parseTpmsIdObject } from '../../src/tpm/structures/credential.js';
import { readTpmtHa, writeTpmtHa } from '../../src/tpm/structures/ha.js';
import { readTpmlPcrSelection, writeTpmlPcrSelection, readTpmsPcrSelection, writeTpmsPcrSelection } from '../../src/tpm/structures/pcr-selection.js';
import {
  marshalTpm2bPublic,
  marshalTpmtPublic,
  parseTpm2bPublic,
  parseTpmtPublic,
  readTpmsEccPoint,
  writeTpmsEccPoint,
} from '../../src/tpm/structures/public.js';
import { marshalTpmtSignature, parseTpmtSignature } from '../../src/tpm/structures/signature.js';
import {
  Tpm2bAttest,
  Tpm2bData,
  Tpm2bDigest,
  Tpm2bEccParameter,
  Tpm2bEncryptedSecret,
  Tpm2bIdObject,
  Tpm2bMaxNvBuffer,
  Tpm2bName,
  Tpm2bPublicKeyRsa,
  type Tpm2bCodec,
} from '../../src/tpm/structures/sized.js';
import * as arb from './arbitraries.js';

interface Codec<T> {
  readonly name: string;
  readonly arbitrary: fc.Arbitrary<T>;
  readonly marshal: (v: T) => Uint8Array;
  readonly parse: (b: Uint8Array) => T;
}

const whole =
  <T>(what: string, read: (r: TpmReader) => T) =>
  (b: Uint8Array): T =>
    parseWhole(b, what, read);

const tpm2bCodec = (c: Tpm2bCodec): Codec<Uint8Array> => ({
  name: c.name,
  arbitrary: fc.uint8Array({ maxLength: c.max }),
  marshal: (v) => marshal(v, (w, x) => c.write(w, x)),
  parse: whole(c.name, (r) => c.read(r)),
});

/** Erases a codec's value type once TypeScript has checked it against its functions. */
const codec = <T,>(c: Codec<T>): Codec<unknown> => c as Codec<unknown>;

const CODECS: Codec<unknown>[] = [
  codec({ name: 'TPMS_ATTEST', arbitrary: arb.tpmsAttest, marshal: marshalTpmsAttest, parse: parseTpmsAttest }),
  codec({ name: 'TPMT_PUBLIC', arbitrary: arb.tpmtPublic, marshal: marshalTpmtPublic, parse: parseTpmtPublic }),
  codec({ name: 'TPM2B_PUBLIC', arbitrary: arb.tpmtPublic, marshal: marshalTpm2bPublic, parse: parseTpm2bPublic }),
  codec({ name: 'TPMT_SIGNATURE', arbitrary: arb.tpmtSignature, marshal: marshalTpmtSignature, parse: parseTpmtSignature }),
  codec({ name: 'TPMS_ID_OBJECT', arbitrary: arb.idObject, marshal: marshalTpmsIdObject, parse: parseTpmsIdObject }),
  codec({ name: 'TPMT_HA', arbitrary: arb.tpmtHa, marshal: (v) => marshal(v, writeTpmtHa), parse: whole('TPMT_HA', (r) => readTpmtHa(r)) }),
  codec({ name: 'TPMS_PCR_SELECTION', arbitrary: arb.pcrSelection, marshal: (v) => marshal(v, writeTpmsPcrSelection), parse: whole('TPMS_PCR_SELECTION', (r) => readTpmsPcrSelection(r)) }),
  codec({ name: 'TPML_PCR_SELECTION', arbitrary: arb.pcrSelectionList, marshal: (v) => marshal(v, writeTpmlPcrSelection), parse: whole('TPML_PCR_SELECTION', (r) => readTpmlPcrSelection(r)) }),
  codec({ name: 'TPMS_CLOCK_INFO', arbitrary: arb.clockInfo, marshal: (v) => marshal(v, writeTpmsClockInfo), parse: whole('TPMS_CLOCK_INFO', (r) => readTpmsClockInfo(r)) }),
  codec({ name: 'TPMS_ECC_POINT', arbitrary: arb.eccPoint, marshal: (v) => marshal(v, writeTpmsEccPoint), parse: whole('TPMS_ECC_POINT', (r) => readTpmsEccPoint(r)) }),
  ...[Tpm2bDigest, Tpm2bData, Tpm2bName, Tpm2bMaxNvBuffer, Tpm2bPublicKeyRsa, Tpm2bEccParameter, Tpm2bEncryptedSecret, Tpm2bIdObject, Tpm2bAttest].map((c) => codec(tpm2bCodec(c))),
];

/** Parses and reports the outcome: a value, or a TPM_PARSE_ERROR; anything else fails the property. */
function parseOrTypedError(codec: Codec<unknown>, bytes: Uint8Array): 'value' | 'error' {
  try {
    codec.parse(bytes);
    return 'value';
  } catch (e) {
    if (isTrustlaunchError(e, 'TPM_PARSE_ERROR')) return 'error';
    throw new Error(`${codec.name}: unexpected ${String(e)}`, { cause: e });
  }
}

void describe('TPM structures: marshal and unmarshal', () => {
  for (const codec of CODECS) {
    void it(`${codec.name} round-trips exactly`, () => {
      fc.assert(
        fc.property(codec.arbitrary, (v) => {
          const bytes = codec.marshal(v);
          const back = codec.parse(bytes);
          assert.deepEqual(arb.norm(back), arb.norm(v));
          assert.deepEqual(Buffer.from(codec.marshal(back)), Buffer.from(bytes));
        }),
        { numRuns: 200 },
      );
    });

    void it(`${codec.name} rejects a trailing byte and every truncation with TPM_PARSE_ERROR`, () => {
      fc.assert(
        fc.property(codec.arbitrary, fc.nat(), (v, cut) => {
          const bytes = Buffer.from(codec.marshal(v));
          // (TPMS_ID_OBJECT is exempt: its encIdentity runs to the end, so a longer or shorter one can be well formed)
          if (codec.name === 'TPMS_ID_OBJECT') return;
          assert.throws(() => codec.parse(Buffer.concat([bytes, Buffer.of(0)])), (e) => isTrustlaunchError(e, 'TPM_PARSE_ERROR'));
          if (bytes.length > 0) {
            assert.throws(() => codec.parse(bytes.subarray(0, cut % bytes.length)), (e) => isTrustlaunchError(e, 'TPM_PARSE_ERROR'));
          }
        }),
        { numRuns: 100 },
      );
    });

    void it(`${codec.name}: random bytes give a value or TPM_PARSE_ERROR, nothing else`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
          parseOrTypedError(codec, bytes);
        }),
        { numRuns: 300 },
      );
    });

    void it(`${codec.name}: mutated valid encodings give a value or TPM_PARSE_ERROR, nothing else`, () => {
      fc.assert(
        fc.property(codec.arbitrary, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (v, flips) => {
          const bytes = Buffer.from(codec.marshal(v));
          if (bytes.length === 0) return;
          for (const [at, value] of flips) bytes[at % bytes.length] = value;
          parseOrTypedError(codec, bytes);
        }),
        { numRuns: 300 },
      );
    });
  }
});

void describe('TpmReader bounds', () => {
  void it('refuses a TPM2B size above its bound before reading (no allocation from the size field)', () => {
    const w = new TpmWriter().u16(0xffff).bytes(Buffer.alloc(10));
    assert.throws(
      () => parseWhole(w.finish(), 'TPM2B_DIGEST', (r) => Tpm2bDigest.read(r)),
      (e) => e instanceof TrustlaunchError && e.code === 'TPM_PARSE_ERROR' && /exceeds the bound 64/.test(e.message),
    );
  });

  void it('refuses a TPML count above HASH_COUNT before looping', () => {
    const bytes = new TpmWriter().u32(0xffff_ffff).finish();
    assert.throws(() => parseWhole(bytes, 'TPML_PCR_SELECTION', (r) => readTpmlPcrSelection(r)), /count 4294967295 exceeds the bound 16/);
  });

  void it('reads 64-bit fields exactly as BigInt (no 32-bit garbling)', () => {
    const clock = 0x0123_4567_89ab_cdefn;
    const bytes = marshal({ clock, resetCount: 0xffff_ffff, restartCount: 1, safe: true }, writeTpmsClockInfo);
    assert.equal(bytes.toString('hex'), '0123456789abcdefffffffff0000000101');
    assert.equal(parseWhole(bytes, 'TPMS_CLOCK_INFO', (r) => readTpmsClockInfo(r)).clock, clock);
  });

  void it('names the structure, the field and the offset in its errors', () => {
    const attest = Buffer.from('ff54434780180004', 'hex');
    assert.throws(
      () => parseTpmsAttest(attest),
      (e) => e instanceof TrustlaunchError && e.code === 'TPM_PARSE_ERROR' && e.message.startsWith('TPMS_ATTEST: qualifiedSigner at offset 8'),
    );
  });

  void it('rejects an unknown TPMI_ST_ATTEST, hash algorithm and public type', () => {
    const header = new TpmWriter().u32(0xff544347).u16(0x801d).u16(0).u16(0).bytes(Buffer.alloc(17)).u64(0n).finish();
    assert.throws(() => parseTpmsAttest(header), /0x801d is not a TPMI_ST_ATTEST/);
    assert.throws(() => parseWhole(Buffer.from('0099', 'hex'), 'TPMT_HA', (r) => readTpmtHa(r)), /is not a hash algorithm/);
    assert.throws(() => parseTpmtPublic(Buffer.from('0099000b', 'hex')), /is not a TPMI_ALG_PUBLIC/);
  });

  void it('writer refuses values that do not fit their fields (a caller bug, RangeError)', () => {
    assert.throws(() => new TpmWriter().u16(0x10000), RangeError);
    assert.throws(() => new TpmWriter().u64(-1n), RangeError);
    assert.throws(() => marshal(Buffer.alloc(65), (w, v) => Tpm2bDigest.write(w, v)), RangeError);
    assert.throws(() => marshal({ hashAlg: TPM_ALG.SHA256, digest: Buffer.alloc(20) }, writeTpmtHa), RangeError);
  });

  void it('back-patches sizes for command marshalling', () => {
    const w = new TpmWriter(4);
    w.u16(0x8001).u32(0).u32(0x0000017e);
    w.sized32Block((x) => x.u32(0x40000009).u16(0));
    w.sizedBlock((x) => x.u8(7));
    w.patchU32(2, w.length);
    assert.equal(w.finish().toString('hex'), '8001' + '00000017' + '0000017e' + '00000006' + '40000009' + '0000' + '0001' + '07');
  });
});
