export * from './errors.js';
export * from './base64url.js';
export * from './digest.js';
export * from './nonce.js';
export * from './canonical-json.js';
export * from './messages.js';
