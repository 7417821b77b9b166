// Distinguished-name comparison for chain building (RFC 5280 §7.1). Issuers and
// subjects are matched on a canonical form rather than raw bytes, because real EK chains
// encode the same name with different string types (PrintableString in one certificate,
// UTF8String in the next). The canonical form follows OpenSSL's: every directory string
// decoded to text, outer whitespace removed, inner runs of whitespace collapsed, ASCII
// letters lowered; the attributes of a multi-valued RDN sorted; other values kept as bytes.
import { TrustlaunchError } from '../../protocol/errors.js';
import { TAG, decodeOid, readChildren, readWhole } from '../der.js';

const CODE = 'MALFORMED_CERTIFICATE';

/** Decoders of the directory string types (X.520 DirectoryString and friends). */
const STRING_DECODERS: Readonly<Record<number, (bytes: Buffer) => string>> = {
  0x0c: (b) => b.toString('utf8'), // UTF8String
  0x13: (b) => b.toString('latin1'), // PrintableString
  0x14: (b) => b.toString('latin1'), // TeletexString (treated as Latin-1, as OpenSSL does)
  0x16: (b) => b.toString('latin1'), // IA5String
  0x1c: decodeUtf32be, // UniversalString
  0x1e: (b) => Buffer.from(b).swap16().toString('utf16le'), // BMPString
};

function decodeUtf32be(b: Buffer): string {
  if (b.length % 4 !== 0) throw new TrustlaunchError(CODE, 'UniversalString length is not a multiple of 4');
  let out = '';
  for (let i = 0; i < b.length; i += 4) {
    const cp = b.readUInt32BE(i);
    if (cp > 0x10ffff) throw new TrustlaunchError(CODE, 'UniversalString code point out of range');
    out += String.fromCodePoint(cp);
  }
  return out;
}

function canonicalText(text: string): string {
  return text
    .trim()
    .replace(/\s+/g, ' ')
    .replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** The canonical key of a Name's DER (RDNSequence); equal keys mean the same name. */
export function canonicalName(nameDer: Buffer): string {
  const name = readWhole(nameDer, CODE);
  if (name.tag !== TAG.SEQUENCE) throw new TrustlaunchError(CODE, 'a Name is not a SEQUENCE');
  const rdns = readChildren(name, CODE).map((rdn) => {
    if (rdn.tag !== TAG.SET) throw new TrustlaunchError(CODE, 'an RDN is not a SET');
    const attributes = readChildren(rdn, CODE).map((atv) => {
      const [type, value, extra] = readChildren(atv, CODE);
      if (atv.tag !== TAG.SEQUENCE || type?.tag !== TAG.OID || value === undefined || extra !== undefined) {
        throw new TrustlaunchError(CODE, 'malformed AttributeTypeAndValue');
      }
      const decode = STRING_DECODERS[value.tag];
      const canonical = decode === undefined ? `#${value.bytes.toString('hex')}` : JSON.stringify(canonicalText(decode(value.content)));
      return `${decodeOid(type.content, CODE)}=${canonical}`;
    });
    return attributes.sort().join('+');
  });
  return rdns.join(',');
}
