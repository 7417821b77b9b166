// Receipts: JWTs (typ eat+jwt) the CA signs over a launch decision (DESIGN.md §4.3).
export { issueReceipt } from './receipts/issue.js';
export type { ReceiptSigner } from './receipts/issue.js';
export { verifyReceipt, decodeReceiptUnverified } from './receipts/verify.js';
export type { VerifyReceiptOptions, ReceiptStep } from './receipts/verify.js';
export { toJwks, parseJwks, receiptKeyId, receiptAlgorithmForKey, RECEIPT_ALGORITHMS } from './receipts/jwks.js';
export type { Jwks, PublishedJwk, PinnedKey, ReceiptAlgorithm } from './receipts/jwks.js';
export { MAX_RECEIPT_CHARS } from './receipts/compact.js';
