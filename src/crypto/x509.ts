// X.509 for trustlaunch: parse certificates, issue them in the project's profiles, and
// verify chains to pinned roots. See docs/crypto.md "X.509 profiles".
export { Certificate, parseCertificate, parseCertificates, toPem, KEY_USAGE_BITS, MAX_CERTIFICATE_DER_BYTES, SIGNATURE_ALGORITHMS } from './x509/certificate.js';
export type { KeyUsage, CertificateExtensionInfo } from './x509/certificate.js';
export { createSelfSignedCa, issueCertificate, keyIdentifier } from './x509/issue.js';
export type { CertificateProfile, CertificateIssuer, IssueCertificateOptions, CreateSelfSignedCaOptions } from './x509/issue.js';
export { verifyChain, verifyChainSync } from './x509/chain.js';
export type { ChainFailureReason, VerifyChainOptions } from './x509/chain.js';
export { TCG_OID } from './x509/tcg.js';
export type { TpmAttributes } from './x509/tcg.js';
