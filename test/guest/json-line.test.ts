// guest/qemu/rootfs/usr/lib/trustlaunch/json-line.awk, run by the very busybox binary
// the guest image ships (/bin/busybox from busybox-static): it must take exactly the JSON
// subset the VM channel uses and reject everything else as a whole line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import fc from 'fast-check';

const AWK = fileURLToPath(new URL('../../guest/qemu/rootfs/usr/lib/trustlaunch/json-line.awk', import.meta.url));
const BUSYBOX = '/bin/busybox';

function parse(input: string): { status: number | null; lines: string[] } {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: apt-get install busybox-static (scripts/setup-system.sh)`);
  const r = spawnSync(BUSYBOX, ['awk', '-f', AWK], { input, encoding: 'utf8' });
  return { status: r.status, lines: r.stdout === '' ? [] : r.stdout.replace(/\n$/, '').split('\n') };
}

/** What the parser should print for an object of the accepted subset. */
function expected(obj: Record<string, unknown>): string[] {
  const scalar = (v: unknown): string => (typeof v === 'string' ? `s:${v}` : typeof v === 'number' ? `n:${v}` : `l:${String(v)}`);
  return Object.entries(obj).flatMap(([k, v]) =>
    Array.isArray(v) ? [`${k}#=${v.length}`, ...v.map((e) => `${k}[]=${scalar(e)}`)] : [`${k}=${scalar(v)}`]);
}

void describe('json-line.awk (the guest channel parser)', () => {
  void it('prints typed members of the protocol messages', () => {
    const line = '{"v":1,"type":"config","hostname":"vm-1.example","authorizedKeys":["ssh-ed25519 AAAA user"],"sshPort":22}';
    assert.deepEqual(parse(`${line}\n`), {
      status: 0,
      lines: ['v=n:1', 'type=s:config', 'hostname=s:vm-1.example', 'authorizedKeys#=1', 'authorizedKeys[]=s:ssh-ed25519 AAAA user', 'sshPort=n:22'],
    });
    assert.deepEqual(parse('{ "v" : 1 , "k" : [ ] , "b" : true , "z" : null , "neg" : -3 }\n'), { status: 0, lines: ['v=n:1', 'k#=0', 'b=l:true', 'z=l:null', 'neg=n:-3'] });
    assert.deepEqual(parse('{"v":1}'), { status: 0, lines: ['v=n:1'] }, 'a final line without newline');
    assert.deepEqual(parse('{"c":"é ü ✓"}\n'), { status: 0, lines: ['c=s:é ü ✓'] });
  });

  void it('rejects the whole line for anything outside the subset', () => {
    const bad = [
      '', 'null', '[]', '"x"', '{', '{"v":1', '{"v":1}x', '{"v":1} {}', '{"v":1,}', '{,"v":1}', '{"v":1 "w":2}',
      '{"v":01}', '{"v":1.5}', '{"v":1e3}', '{"v":+1}', '{"v":-}', '{"v":tru}', '{"v":True}',
      '{"a":"b\\"c"}', '{"a":"b\\\\"}', '{"a":"\\u0041"}', '{"a":{"b":1}}', '{"a":[[1]]}', '{"a":[1,]}', '{"a":[,1]}',
      '{"v":1,"v":1}', '{"1a":1}', '{"a b":1}', '{"":1}', "{'a':1}", '{a:1}',
      '{"a":"tab\there"}', '{"a":"nul\u0000"}', '{"a":"esc\u001b"}', '\t{"v":1}', '{"v":1}\r',
      '{"v":1}\n{"v":1}', '{"v":1}\n\n',
    ];
    for (const input of bad) {
      const r = parse(input.endsWith('\n') ? input : `${input}\n`);
      assert.deepEqual(r, { status: 1, lines: [] }, `rejects ${JSON.stringify(input)}`);
    }
    const long = `{"a":"${'x'.repeat(16 * 1024)}"}\n`;
    assert.deepEqual(parse(long), { status: 1, lines: [] }, 'rejects a line over 16 KiB');
  });

  void it('round-trips any object of the subset that JSON.stringify writes', () => {
    const name = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,12}$/);
    const str = fc.string({ maxLength: 40 }).filter((s) => ![...s].some((c) => c === '"' || c === '\\' || c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f));
    const scalar = fc.oneof(str, fc.integer({ min: -1e9, max: 1e9 }), fc.constantFrom(true, false, null));
    const value = fc.oneof(scalar, fc.array(scalar, { maxLength: 4 }));
    fc.assert(
      fc.property(fc.dictionary(name, value, { maxKeys: 6 }), (obj) => {
        assert.deepEqual(parse(`${JSON.stringify(obj)}\n`), { status: 0, lines: expected(obj) });
      }),
      { numRuns: 150 },
    );
  });
});
