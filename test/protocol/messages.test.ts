import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { EvidenceSchema, LaunchClaimsSchema, parseMessage, VmCreateRequestSchema, type LaunchClaims } from '../../src/protocol/messages.js';

const claims = (): LaunchClaims => ({
  nodeId: 'node-1',
  vmId: 'vm-1',
  nonce: newNonce(),
  hostname: 'vm-1.example',
  kernel: sha256Digest('kernel'),
  sshHostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ4gQ2P4xGvjq0x5s8c4M2F3D2H4r8aKJ0lYg8eQ8Zt5',
  time: 1_790_000_000,
});

describe('wire schemas', () => {
  it('accept a well-formed message', () => {
    const c = claims();
    assert.deepEqual(parseMessage(LaunchClaimsSchema, c), c);
  });

  it('reject unknown fields and name the path', () => {
    assert.throws(
      () => parseMessage(LaunchClaimsSchema, { ...claims(), extra: 1 }),
      (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST') && /extra/.test(e.message),
    );
  });

  it('reject malformed digests, nonces, ids and keys with the field named', () => {
    const cases: [keyof LaunchClaims, unknown][] = [
      ['kernel', 'sha256:XYZ'],
      ['nonce', 'short'],
      ['vmId', 'VM_1'],
      ['sshHostKey', 'ssh-rsa AAAAB3NzaC1yc2E='],
      ['time', -1],
      ['hostname', 'a..b'],
    ];
    for (const [field, value] of cases) {
      assert.throws(
        () => parseMessage(LaunchClaimsSchema, { ...claims(), [field]: value }),
        (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST') && e.message.includes(field),
        `field ${field}`,
      );
    }
  });

  it('bound sizes: oversized base64url and long event logs are refused', () => {
    const quote = { attest: 'A'.repeat(2000), signature: 'AA', pcrs: { sha256: {} } };
    assert.throws(() => parseMessage(EvidenceSchema, { claims: claims(), quote, eventLog: [] }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    const event = { pcrIndex: 0, eventType: 1, digests: [{ alg: 'sha256', digest: '0'.repeat(64) }], event: '' };
    const ok = { attest: 'AA', signature: 'AA', pcrs: { sha256: { '0': '0'.repeat(64) } } };
    assert.throws(
      () => parseMessage(EvidenceSchema, { claims: claims(), quote: ok, eventLog: Array.from({ length: 1025 }, () => event) }),
      (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'),
    );
    assert.ok(parseMessage(EvidenceSchema, { claims: claims(), quote: ok, eventLog: [event] }));
  });

  it('refuse PCR indices outside 0..23', () => {
    const quote = { attest: 'AA', signature: 'AA', pcrs: { sha256: { '24': '0'.repeat(64) } } };
    assert.throws(() => parseMessage(EvidenceSchema, { claims: claims(), quote, eventLog: [] }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
  });

  it('VM create requests need a valid nonce', () => {
    assert.ok(parseMessage(VmCreateRequestSchema, { image: 'default', nonce: newNonce() }));
    assert.throws(() => parseMessage(VmCreateRequestSchema, { image: 'default', nonce: 'x' }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
  });
});
