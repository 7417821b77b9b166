import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalize } from '../../src/protocol/canonical-json.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';

// RFC 8785 §3.2.2 / §3.2.3 and Appendix B examples.
describe('canonical JSON (RFC 8785)', () => {
  it('serialises the §3.2.2 example exactly', () => {
    const input = JSON.parse(
      '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],' +
        '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}',
    ) as unknown;
    assert.equal(
      canonicalize(input),
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('sorts keys by UTF-16 code units (§3.2.3)', () => {
    const input = JSON.parse(
      '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One",' +
        '"\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}',
    ) as unknown;
    // Compare the text: JS objects would move the integer-like key "1" first.
    const keys = [...canonicalize(input).matchAll(/"([^"]*)":"/g)].map((m) => JSON.parse(`"${m[1]}"`) as string);
    assert.deepEqual(keys, ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33']);
  });

  it('serialises numbers as Appendix B lists them', () => {
    const cases: [number, string][] = [
      [0, '0'], [-0, '0'], [5e-324, '5e-324'], [1.7976931348623157e308, '1.7976931348623157e+308'],
      [9007199254740992, '9007199254740992'], [-9007199254740992, '-9007199254740992'],
      [295147905179352830000, '295147905179352830000'], [1e21, '1e+21'], [1e-7, '1e-7'],
      [0.000001, '0.000001'], [333333333.3333333, '333333333.3333333'], [999999999999999900000, '999999999999999900000'],
    ];
    for (const [n, text] of cases) assert.equal(canonicalize(n), text, `number ${n}`);
  });

  it('refuses values I-JSON does not allow', () => {
    for (const bad of [NaN, Infinity, -Infinity, '\ud800', { a: undefined }, 1n, new Date(0), () => 1]) {
      assert.throws(() => canonicalize(bad), (e) => isTrustlaunchError(e, 'MALFORMED_JSON'));
    }
  });

  it('is a fixed point: parse(canonical) canonicalises to the same text', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const once = canonicalize(v);
        assert.equal(canonicalize(JSON.parse(once)), once);
      }),
    );
  });
});
