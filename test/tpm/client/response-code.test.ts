// Response-code decoding (Part 2 §6.6): spec names for format-zero errors and warnings,
// format-one errors with their handle / session / parameter numbers, and every other
// 32-bit value decoded without throwing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TpmResponseError } from '../../../src/tpm/client/errors.js';
import { RC, RETRYABLE, decodeResponseCode, describeResponseCode } from '../../../src/tpm/client/response-code.js';
import { TPM_CC } from '../../../src/tpm/client/constants.js';

void describe('TPM response codes', () => {
  void it('names format-zero errors and warnings', () => {
    const cases: [number, string, boolean][] = [
      [0x100, 'TPM_RC_INITIALIZE', false],
      [0x101, 'TPM_RC_FAILURE', false],
      [0x14c, 'TPM_RC_NV_DEFINED', false],
      [0x148, 'TPM_RC_NV_LOCKED', false],
      [0x14a, 'TPM_RC_NV_UNINITIALIZED', false],
      [0x902, 'TPM_RC_OBJECT_MEMORY', true],
      [0x908, 'TPM_RC_YIELDED', true],
      [0x90a, 'TPM_RC_TESTING', true],
      [0x921, 'TPM_RC_LOCKOUT', true],
      [0x922, 'TPM_RC_RETRY', true],
      [0x910, 'TPM_RC_REFERENCE_H0', true],
      [0x91e, 'TPM_RC_REFERENCE_S6', true],
    ];
    for (const [rc, name, warning] of cases) {
      const d = decodeResponseCode(rc);
      assert.equal(d.name, name, `0x${rc.toString(16)}`);
      assert.equal(d.format, 'format-zero');
      assert.equal(d.warning, warning);
      assert.equal(d.handle ?? d.session ?? d.parameter, undefined);
    }
  });

  void it('decodes format-one codes with the handle, session or parameter they concern', () => {
    assert.deepEqual(decodeResponseCode(0x18b), { rc: 0x18b, name: 'TPM_RC_HANDLE', format: 'format-one', warning: false, base: RC.HANDLE, handle: 1 });
    assert.deepEqual(decodeResponseCode(0x28b), { rc: 0x28b, name: 'TPM_RC_HANDLE', format: 'format-one', warning: false, base: RC.HANDLE, handle: 2 });
    assert.deepEqual(decodeResponseCode(0x98e), { rc: 0x98e, name: 'TPM_RC_AUTH_FAIL', format: 'format-one', warning: false, base: RC.AUTH_FAIL, session: 1 });
    assert.deepEqual(decodeResponseCode(0xaa2), { rc: 0xaa2, name: 'TPM_RC_BAD_AUTH', format: 'format-one', warning: false, base: RC.BAD_AUTH, session: 2 });
    assert.deepEqual(decodeResponseCode(0x1d5), { rc: 0x1d5, name: 'TPM_RC_SIZE', format: 'format-one', warning: false, base: RC.SIZE, parameter: 1 });
    assert.deepEqual(decodeResponseCode(0xfdf), { rc: 0xfdf, name: 'TPM_RC_INTEGRITY', format: 'format-one', warning: false, base: RC.INTEGRITY, parameter: 15 });
    // N = 0: the code names no position.
    assert.deepEqual(decodeResponseCode(0x09d), { rc: 0x09d, name: 'TPM_RC_POLICY_FAIL', format: 'format-one', warning: false, base: RC.POLICY_FAIL });
  });

  void it('keeps TPM 1.2, vendor and non-TPM values apart from TPM 2.0 codes', () => {
    assert.equal(decodeResponseCode(0x01e).name, 'TPM_RC_BAD_TAG');
    assert.equal(decodeResponseCode(0x01e).format, 'tpm12');
    assert.equal(decodeResponseCode(0x003).format, 'tpm12');
    assert.equal(decodeResponseCode(0x501).format, 'vendor');
    assert.equal(decodeResponseCode(0x000a0008).format, 'not-tpm');
    assert.equal(decodeResponseCode(0).name, 'TPM_RC_SUCCESS');
    // An unassigned TPM 2.0 number still decodes, with its number in the name.
    assert.equal(decodeResponseCode(0x17e).name, 'TPM_RC_0x17e');
  });

  void it('retries exactly TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING', () => {
    assert.deepEqual([...RETRYABLE].sort(), [RC.RETRY, RC.YIELDED, RC.TESTING].sort());
  });

  void it('decodes every 32-bit value without throwing, with a consistent shape', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (rc) => {
        const d = decodeResponseCode(rc);
        assert.equal(d.rc, rc >>> 0);
        assert.ok(d.name.length > 0);
        const positions = [d.handle, d.session, d.parameter].filter((x) => x !== undefined);
        assert.ok(positions.length <= 1);
        if (d.format === 'format-one') assert.equal(d.base & ~0xbf, 0);
        else assert.equal(positions.length, 0);
        assert.ok(describeResponseCode(d).includes(d.name));
      }),
      { numRuns: 5000 },
    );
  });

  void it('TpmResponseError carries the command, the decoded code and a readable message', () => {
    const e = new TpmResponseError(TPM_CC.NV_Write, 0x98e);
    assert.equal(e.code, 'TPM_RESPONSE_ERROR');
    assert.equal(e.message, 'TPM2_NV_Write failed: TPM_RC_AUTH_FAIL (0x98e, session 1)');
    assert.equal(e.rc.session, 1);
    assert.ok(e.is(RC.AUTH_FAIL));
    assert.deepEqual(e.detail, { command: 'TPM2_NV_Write', rc: 0x98e, name: 'TPM_RC_AUTH_FAIL', session: 1 });
  });
});
