// The public API of src/crypto (docs/crypto.md). Import from here, or from the module.
export * from './keys.js';
export * from './ssh-keys.js';
export * from './fingerprints.js';
export * from './signatures.js';
export * from './files.js';
export * from './x509.js';
export * from './receipts.js';
export * from './ssh-certificates.js';
export * from './tls.js';
