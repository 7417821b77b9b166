// Every VT-d fault reason the walk can produce, against hand-built remapping tables.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FAULT_REASON, FAULT_TYPE, faultReasonName } from '../../../src/node/hypervisor/vtd/fault.js';
import { ADDRESS_WIDTH, PAGE_SIZE, TRANSLATION_TYPE, type ContextEntry, type RemappingTables, type SlPte } from '../../../src/node/hypervisor/vtd/structures.js';
import { translate, type Translation } from '../../../src/node/hypervisor/vtd/translate.js';
import { parseBdf, sourceId } from '../../../src/node/hypervisor/pci.js';

const SID = sourceId(parseBdf('00:03.0'));
const CTP = 0x5000;
const SLPTPTR = 0x6000;
const GOOD_CE: ContextEntry = { present: true, fpd: false, tt: TRANSLATION_TYPE.UNTRANSLATED_ONLY, slptptr: SLPTPTR, aw: ADDRESS_WIDTH.AGAW_48, did: 7 };

function tables(over: { ce?: Partial<ContextEntry> | null; ptes?: [number, SlPte][]; root?: 'absent' | 'not-present' | 'no-table'; noPageTable?: boolean } = {}): RemappingTables {
  const context: (ContextEntry | undefined)[] = Array.from({ length: 256 }, () => undefined);
  if (over.ce !== null) context[SID & 0xff] = { ...GOOD_CE, ...over.ce };
  const root = Array.from({ length: 256 }, () => undefined) as ({ present: boolean; ctp: number } | undefined)[];
  root[0] = { present: over.root !== 'not-present', ctp: over.root === 'no-table' ? 0x9000 : CTP };
  return {
    root: over.root === 'absent' ? undefined : root,
    contextTables: new Map([[CTP, context]]),
    pageTables: over.noPageTable === true ? new Map() : new Map([[SLPTPTR, new Map(over.ptes ?? [[1, { r: true, w: true, addr: 0x42000 }]])]]),
  };
}

function faultOf(t: Translation): { fr: number; fi: number; t: number; sid: number; recorded: boolean } {
  assert.equal(t.ok, false, 'expected a fault');
  if (t.ok) throw new Error('unreachable');
  return { ...t.fault, recorded: t.recorded };
}

void describe('VT-d translation walk', () => {
  void it('translates through present root, context and a PTE with the right bit', () => {
    const t = translate(tables(), { sid: SID, address: PAGE_SIZE + 0x123, kind: 'write' });
    assert.deepEqual(t, { ok: true, hpa: 0x42123, pte: { r: true, w: true, addr: 0x42000 }, did: 7 });
  });

  const cases: [string, number, Parameters<typeof tables>[0], { address?: number; kind?: 'read' | 'write'; at?: 'translation-request' }][] = [
    ['root table address not programmed', FAULT_REASON.ROOT_TABLE_ADDRESS_INVALID, { root: 'absent' }, {}],
    ['root entry not present', FAULT_REASON.ROOT_ENTRY_NOT_PRESENT, { root: 'not-present' }, {}],
    ['context table pointer invalid', FAULT_REASON.CONTEXT_TABLE_POINTER_INVALID, { root: 'no-table' }, {}],
    ['context entry not present (absent)', FAULT_REASON.CONTEXT_ENTRY_NOT_PRESENT, { ce: null }, {}],
    ['context entry not present (P clear)', FAULT_REASON.CONTEXT_ENTRY_NOT_PRESENT, { ce: { present: false } }, {}],
    ['context entry invalid: AW not supported (57-bit)', FAULT_REASON.CONTEXT_ENTRY_INVALID, { ce: { aw: ADDRESS_WIDTH.AGAW_57 } }, {}],
    ['context entry invalid: reserved AW encoding', FAULT_REASON.CONTEXT_ENTRY_INVALID, { ce: { aw: 0 } }, {}],
    ['context entry invalid: pass-through not supported', FAULT_REASON.CONTEXT_ENTRY_INVALID, { ce: { tt: TRANSLATION_TYPE.PASS_THROUGH } }, {}],
    ['address beyond AW (48-bit)', FAULT_REASON.ADDRESS_BEYOND_MGAW, {}, { address: 2 ** 48 }],
    ['address beyond AW (39-bit context entry)', FAULT_REASON.ADDRESS_BEYOND_MGAW, { ce: { aw: ADDRESS_WIDTH.AGAW_39 } }, { address: 2 ** 39 + PAGE_SIZE }],
    ['write to a page without W', FAULT_REASON.PTE_WRITE_NOT_SET, { ptes: [[1, { r: true, w: false, addr: 0x42000 }]] }, { kind: 'write' }],
    ['write to an unmapped page', FAULT_REASON.PTE_WRITE_NOT_SET, {}, { kind: 'write', address: 5 * PAGE_SIZE }],
    ['read from a page without R', FAULT_REASON.PTE_READ_NOT_SET, { ptes: [[1, { r: false, w: true, addr: 0x42000 }]] }, { kind: 'read' }],
    ['read from an unmapped page', FAULT_REASON.PTE_READ_NOT_SET, {}, { kind: 'read', address: 5 * PAGE_SIZE }],
    ['second-level table pointer invalid', FAULT_REASON.NEXT_PAGE_TABLE_INVALID, { noPageTable: true }, {}],
    ['translation request blocked by TT = 00b', FAULT_REASON.TRANSLATION_REQUEST_BLOCKED, {}, { at: 'translation-request' }],
  ];
  for (const [name, fr, over, req] of cases) {
    void it(`fault ${fr.toString(16)}h ${faultReasonName(fr as never)}: ${name}`, () => {
      const address = req.address ?? PAGE_SIZE + 8;
      const kind = req.kind ?? 'read';
      const f = faultOf(translate(tables(over), { sid: SID, address, kind, ...(req.at === undefined ? {} : { at: req.at }) }));
      assert.equal(f.fr, fr);
      assert.equal(f.sid, SID);
      assert.equal(f.fi, address - (address % PAGE_SIZE));
      assert.equal(f.t, kind === 'write' ? FAULT_TYPE.WRITE : FAULT_TYPE.READ);
      assert.equal(f.recorded, true);
    });
  }

  void it('FPD set in the context entry suppresses recording, not the fault', () => {
    const f = faultOf(translate(tables({ ce: { fpd: true } }), { sid: SID, address: 9 * PAGE_SIZE, kind: 'read' }));
    assert.equal(f.fr, FAULT_REASON.PTE_READ_NOT_SET);
    assert.equal(f.recorded, false);
    // Faults found before the context entry is read are always recorded.
    const g = faultOf(translate(tables({ ce: { fpd: true, present: false } }), { sid: SID, address: 0, kind: 'read' }));
    assert.equal(g.recorded, true);
  });

  void it('a requester on another bus misses the root entry', () => {
    const f = faultOf(translate(tables(), { sid: sourceId(parseBdf('01:00.0')), address: PAGE_SIZE, kind: 'read' }));
    assert.equal(f.fr, FAULT_REASON.ROOT_ENTRY_NOT_PRESENT);
  });

  void it('names every encoding after the spec', () => {
    assert.deepEqual(
      Object.values(FAULT_REASON).map((v) => v),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xb, 0xc, 0xd],
    );
    assert.equal(faultReasonName(FAULT_REASON.PTE_WRITE_NOT_SET), 'PTE_WRITE_NOT_SET');
  });
});
