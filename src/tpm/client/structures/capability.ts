// TPMS_CAPABILITY_DATA (Part 2 §10.10.2) for the capabilities this client asks for:
// TPML_HANDLE (§10.9.1), TPML_TAGGED_TPM_PROPERTY (§10.9.8), TPML_PCR_SELECTION (§10.9.7),
// TPML_ALG_PROPERTY (§10.9.6) and TPML_CCA (§10.9.4).
import type { TpmReader } from '../../marshal/reader.js';
import { readTpmlPcrSelection, type TpmlPcrSelection } from '../../structures/pcr-selection.js';
import { TPM_CAP } from '../constants.js';

/** MAX_CAP_BUFFER is 1024 bytes, so no list holds more than 256 four-byte entries. */
const MAX_CAP_ENTRIES = 256;

export interface TaggedProperty {
  readonly property: number;
  readonly value: number;
}

export interface AlgProperty {
  readonly alg: number;
  readonly properties: number;
}

export type CapabilityData =
  | { readonly capability: typeof TPM_CAP.HANDLES; readonly handles: readonly number[] }
  | { readonly capability: typeof TPM_CAP.TPM_PROPERTIES; readonly properties: readonly TaggedProperty[] }
  | { readonly capability: typeof TPM_CAP.PCRS; readonly pcrs: TpmlPcrSelection }
  | { readonly capability: typeof TPM_CAP.ALGS; readonly algorithms: readonly AlgProperty[] }
  | { readonly capability: typeof TPM_CAP.COMMANDS; readonly commands: readonly number[] };

function list<T>(r: TpmReader, field: string, item: (i: number) => T): T[] {
  const n = r.count(`${field}.count`, MAX_CAP_ENTRIES);
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(item(i));
  return out;
}

export function readCapabilityData(r: TpmReader, asked: number): CapabilityData {
  const capability = r.u32('capabilityData.capability');
  if (capability !== asked) r.fail('capabilityData.capability', `answers capability ${capability}, ${asked} was asked`);
  switch (capability) {
    case TPM_CAP.HANDLES:
      return { capability, handles: list(r, 'TPML_HANDLE', (i) => r.u32(`handle[${i}]`)) };
    case TPM_CAP.TPM_PROPERTIES:
      return { capability, properties: list(r, 'TPML_TAGGED_TPM_PROPERTY', (i) => ({ property: r.u32(`tpmProperty[${i}].property`), value: r.u32(`tpmProperty[${i}].value`) })) };
    case TPM_CAP.PCRS:
      return { capability, pcrs: readTpmlPcrSelection(r) };
    case TPM_CAP.ALGS:
      return { capability, algorithms: list(r, 'TPML_ALG_PROPERTY', (i) => ({ alg: r.u16(`algProperties[${i}].alg`), properties: r.u32(`algProperties[${i}].algProperties`) })) };
    case TPM_CAP.COMMANDS:
      return { capability, commands: list(r, 'TPML_CCA', (i) => r.u32(`commandAttributes[${i}]`)) };
    default:
      return r.fail('capabilityData.capability', `capability ${capability} is not one this client reads`);
  }
}
