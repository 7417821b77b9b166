// The pci-nvstore auth device's storage side (claim 2): block I/O, the medium, the TPM
// state layout on blocks, manufacturing. The device model lives in the hypervisor
// (src/node/hypervisor/devices/nvstore.ts), the driver and the TPM engine in the
// mini-domain (src/node/minidomain/nvstore-driver.ts).
export { NVSTORE_BLOCK_SIZE, checkBlockRange, type BlockIo } from './block-io.js';
export { DEFAULT_MEDIUM_BLOCKS, MAX_MEDIUM_BLOCKS, MIN_MEDIUM_BLOCKS, createMediumFile, openMediumFile, type BlockMedium } from './medium.js';
export { BlockStateStore, formatBlockStore } from './state-store.js';
export { NVSTORE_FILES, manufactureNvStore, type ManufacturedNvStore } from './manufacture.js';
