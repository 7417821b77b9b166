// "Manufacturing" a pci-nvstore device: the medium is created and formatted, and a TPM
// state with endorsement keys and EK certificates (signed by the same software
// manufacturer CA as the `sim` device) is written into it, as a vendor would provision
// the device's storage before shipping. From then on only the mini-domain reads that
// state, through the device, and runs the TPM engine on it (claim 2: the device stores,
// the mini-domain computes).
import { join } from 'node:path';
import { ensureManufacturerCa, ekIssuer } from '../sim/manufacturer-ca.js';
import { manufactureTpm, type ManufactureOptions } from '../sim/manufacture.js';
import type { Certificate } from '../../crypto/x509.js';
import type { EkAlgorithm } from '../auth-device.js';
import { DEFAULT_MEDIUM_BLOCKS, createMediumFile, openMediumFile } from './medium.js';
import { BlockStateStore, formatBlockStore } from './state-store.js';

export const NVSTORE_FILES = {
  /** The medium (the device's flash), mode 0600. */
  medium: 'nvstore.img',
} as const;

export interface ManufacturedNvStore {
  readonly mediumPath: string;
  /** The manufacturer CA that signed the EK certificates: the endorsement root a CA trusts. */
  readonly caCertificate: Certificate;
  readonly endorsementKeys: ReadonlyMap<EkAlgorithm, Uint8Array>;
}

/**
 * Manufactures a pci-nvstore medium in `dir` (the manufacturer CA of `dir` is created once
 * and shared with `sim` devices made there). Refuses to replace a medium without `overwrite`.
 */
export async function manufactureNvStore(
  dir: string,
  options: Omit<ManufactureOptions, 'issueEkCertificate'> & { readonly overwrite?: boolean; readonly mediumPath?: string; readonly blocks?: number } = {},
): Promise<ManufacturedNvStore> {
  const ca = await ensureManufacturerCa(dir);
  const mediumPath = options.mediumPath ?? join(dir, NVSTORE_FILES.medium);
  await createMediumFile(mediumPath, options.blocks ?? DEFAULT_MEDIUM_BLOCKS, options.overwrite === true);
  const medium = await openMediumFile(mediumPath);
  try {
    await formatBlockStore(medium);
    const { overwrite: _o, mediumPath: _m, blocks: _b, ...rest } = options;
    const endorsementKeys = await manufactureTpm(new BlockStateStore(medium), { ...rest, issueEkCertificate: ekIssuer(ca) });
    return { mediumPath, caCertificate: ca.certificate, endorsementKeys };
  } finally {
    await medium.close();
  }
}
