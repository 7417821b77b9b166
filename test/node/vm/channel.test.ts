// The VM channel over fd 3: newline-JSON framing, 16 KiB lines, malformed lines dropped
// and counted. Properties of the splitter (any chunking gives the same lines), and a
// hostile guest program run by the real backend under the real hypervisor: its junk is
// dropped at the framing, the hypervisor records its protocol violations, the first valid
// host key is what the mini-domain gets, and an over-long message to it is never sent.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { CHANNEL_MAX_LINE, LineSplitter, decodeGuestLine } from '../../../src/node/vm/process/index.js';
import { bootProcessNodeWithKey, closeProcessNode, type ClientKey, type ProcessNode } from './support.js';

function splitAll(input: Buffer, cuts: number[], maxLine: number): { lines: string[]; overlong: number } {
  const splitter = new LineSplitter(maxLine);
  const lines: string[] = [];
  let overlong = 0;
  const at = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  let prev = 0;
  for (const c of [...at, input.length]) {
    splitter.push(input.subarray(prev, c), (l) => lines.push(l.toString('latin1')), () => overlong++);
    prev = c;
  }
  return { lines, overlong };
}

void describe('VM channel framing', () => {
  void it('any chunking yields the same lines; over-long lines are dropped whole, once each', () => {
    const maxLine = 32;
    fc.assert(
      fc.property(fc.array(fc.string({ unit: fc.constantFrom('a', 'b', '{', '"', ' '), maxLength: 80 }), { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, cuts) => {
        const input = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'latin1');
        const got = splitAll(input, cuts, maxLine);
        assert.deepEqual(got.lines, lines.filter((l) => l.length <= maxLine));
        assert.equal(got.overlong, lines.filter((l) => l.length > maxLine).length);
      }),
    );
  });

  void it('an unterminated flood is never buffered beyond one line', () => {
    const splitter = new LineSplitter(CHANNEL_MAX_LINE);
    let overlong = 0;
    const lines: Buffer[] = [];
    for (let i = 0; i < 1000; i++) splitter.push(Buffer.alloc(64 * 1024, 0x41), (l) => lines.push(l), () => overlong++);
    splitter.push(Buffer.from('\n{"v":1,"type":"ok"}\n'), (l) => lines.push(l), () => overlong++);
    assert.equal(overlong, 1);
    assert.deepEqual(lines.map(String), ['{"v":1,"type":"ok"}']);
  });

  void it('decodes only JSON objects with v 1 and a string type', () => {
    const cases: [string | Buffer, unknown][] = [
      ['{"v":1,"type":"host-key","key":"k"}', { v: 1, type: 'host-key', key: 'k' }],
      ['{"v":1,"type":"x"}', { v: 1, type: 'x' }],
      ['not json', 'not-json'],
      ['', 'not-json'],
      ['[{"v":1,"type":"x"}]', 'not-a-message'],
      ['null', 'not-a-message'],
      ['"str"', 'not-a-message'],
      ['{"v":2,"type":"x"}', 'not-a-message'],
      ['{"v":"1","type":"x"}', 'not-a-message'],
      ['{"v":1,"type":7}', 'not-a-message'],
      ['{"v":1}', 'not-a-message'],
      [Buffer.from([0x7b, 0xff, 0x7d]), 'not-utf8'],
    ];
    for (const [line, expected] of cases) assert.deepEqual(decodeGuestLine(Buffer.from(line)), expected, String(line));
  });
});

/** A guest that misbehaves on its channel, then sends one good key and prints what it receives. */
const HOSTILE_GUEST = `
import { Socket } from 'node:net';
const ch = new Socket({ fd: 3, readable: true, writable: true });
const junk = [
  'not json',
  '[1,2,3]',
  '{"v":2,"type":"host-key","key":"ssh-ed25519 AAAA"}',
  '{"type":"host-key"}',
  '"just a string"',
  '{"v":1,"type":"host-key","key":"ssh-ed25519 ' + 'A'.repeat(20000) + '"}',
];
for (const j of junk) ch.write(j + '\\n');
ch.write(Buffer.from([0x7b, 0xc3, 0x28, 0x7d, 0x0a]));
ch.write('x'.repeat(100000)); // a flood without a newline ...
ch.write('\\n'); // ... dropped as one over-long line
ch.write(JSON.stringify({ v: 1, type: 'host-key', key: KEY1 }) + '\\n');
ch.write(JSON.stringify({ v: 1, type: 'host-key', key: KEY2 }) + '\\n');
ch.write(JSON.stringify({ v: 1, type: 'host-key', key: 'ssh-rsa AAAAB3NzaC1yc2E' }) + '\\n');
let buf = '';
ch.on('data', (d) => {
  buf += d;
  for (let nl = buf.indexOf('\\n'); nl >= 0; nl = buf.indexOf('\\n')) {
    const m = JSON.parse(buf.slice(0, nl));
    buf = buf.slice(nl + 1);
    process.stdout.write('received ' + m.type + ' ' + JSON.stringify({ hostname: m.hostname, sshPort: m.sshPort, keys: m.authorizedKeys?.length, cert: m.certificate?.length }) + '\\n');
    if (m.type === 'config') ch.write(JSON.stringify({ v: 1, type: 'ready', sshPort: m.sshPort }) + '\\n');
  }
});
ch.on('end', () => process.exit(0));
`;

void describe('a hostile guest on its channel', () => {
  let pn: ProcessNode;
  let key: ClientKey;
  before(async () => ({ pn, key } = await bootProcessNodeWithKey()));
  after(() => closeProcessNode(pn, key));

  void it('has its junk dropped and counted, its violations recorded, and its first valid key reported', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { formatSshPublicKey } = await import('../../../src/crypto/ssh-keys.js');
    const key1 = formatSshPublicKey(generateKeyPairSync('ed25519').publicKey);
    const key2 = formatSshPublicKey(generateKeyPairSync('ed25519').publicKey);
    const image = Buffer.from(`const KEY1 = ${JSON.stringify(key1)};\nconst KEY2 = ${JSON.stringify(key2)};\n${HOSTILE_GUEST}`);
    const eventsBefore = pn.node.securityEvents().length;
    const info = await pn.node.dom0.buildVm({ name: 'hostile', image, guest: { hostname: 'hostile.test', authorizedKeys: [key.publicKey] } });
    await pn.node.dom0.startVm(info.vmId);
    const report = await pn.mini.waitForVmReport(info.vmId, 10_000);
    assert.equal(report.sshHostKey, key1, 'the first valid key is the one attested');
    await pn.backend.waitForGuest(info.vmId, 'ready', 10_000);
    const port = pn.backend.endpoint(info.vmId)?.sshPort;
    await until(() => /received config/.test(pn.backend.console(info.vmId) ?? ''));
    assert.match(pn.backend.console(info.vmId) ?? '', new RegExp(`received config \\{"hostname":"hostile.test","sshPort":${port},"keys":1\\}`));

    const violations = pn.node.securityEvents().slice(eventsBefore).filter((e) => e.kind === 'VM_CHANNEL_VIOLATION' && e.domain === info.vmId);
    assert.deepEqual(violations.map((e) => e.detail['reason']), ['second host-key message ignored', 'malformed host-key message']);
    const stats = pn.backend.channelStats(info.vmId);
    assert.deepEqual(stats, { fromGuest: 4, droppedFromGuest: 8, toGuest: 1, droppedToGuest: 0 });

    // Hypervisor → guest: a message longer than a line may be is dropped, not sent in pieces.
    pn.mini.sendHostCertificate(info.vmId, `ssh-ed25519-cert-v01@openssh.com ${'A'.repeat(16_350)}`);
    pn.mini.sendHostCertificate(info.vmId, 'ssh-ed25519-cert-v01@openssh.com AAAA');
    await until(() => /received host-certificate/.test(pn.backend.console(info.vmId) ?? ''));
    assert.deepEqual(pn.backend.channelStats(info.vmId), { fromGuest: 4, droppedFromGuest: 8, toGuest: 2, droppedToGuest: 1 });
    assert.equal((pn.backend.console(info.vmId)?.match(/received host-certificate/g) ?? []).length, 1);
    assert.match(pn.backend.console(info.vmId) ?? '', /"cert":37/);
    await pn.node.dom0.destroyVm(info.vmId);
  });
});

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
