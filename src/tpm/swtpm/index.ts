// swtpm as a node's TPM (process, control channel, manufacturing) and the TPM-backed auth devices.
export * from './control-channel.js';
export * from './device-spec.js';
export * from './hardware-device.js';
export * from './manufacture.js';
export * from './process.js';
export * from './swtpm-device.js';
export * from './tpm-auth-device.js';
