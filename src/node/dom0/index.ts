// dom0 (DESIGN.md §3.2, untrusted): the manager's agent on the node.
export { Dom0, type Dom0Options } from './dom0.js';
export { registerDom0Routes, NodeViewSchema } from './api.js';
export { ImageStore, ownBuffer } from './images.js';
export { MiniDomainLoader } from './minidomain-loader.js';
export { Dom0Vms, VmCreateSchema, VmViewSchema, MAX_INLINE_IMAGE_BYTES, type Dom0VmBackend, type VmCreate, type VmView } from './vms.js';
