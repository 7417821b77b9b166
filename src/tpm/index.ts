// The public surface of src/tpm (structures, crypto on TPM structures, quote verification,
// PCRs and event logs, templates, the software TPM). The command client and the swtpm/tpm
// devices have their own entry points (client/index.ts, swtpm/index.ts). docs/tpm.md
// describes each part.
export * from './constants.js';
export { TpmReader, parseWhole, type ReaderOptions } from './marshal/reader.js';
export { TpmWriter, marshal } from './marshal/writer.js';
export * from './structures/sized.js';
export * from './structures/ha.js';
export * from './structures/pcr-selection.js';
export * from './structures/attest.js';
export * from './structures/object-attributes.js';
export * from './structures/public.js';
export * from './structures/signature.js';
export * from './structures/credential.js';
export { objectName, handleName, qualifiedName } from './crypto/name.js';
export { publicKeyOf, publicAreaFor, uniqueOf } from './crypto/public-key.js';
export { kdfa, kdfe } from './crypto/kdf.js';
export { makeCredential, activateCredential, encryptSeed, decryptSeed, protectCredential, unprotectCredential, protectionOf, type Credential } from './crypto/credential.js';
export { verifyTpmtSignature, signTpmt, ecdsaSignatureToDer } from './crypto/signature.js';
export { pcrDigest } from './crypto/pcr-digest.js';
export { verifyQuote, QUOTE_STEPS, type QuoteStep, type QuoteExpectations, type VerifiedQuote } from './quote/verify.js';
export { verifierKey, cachedVerifierKey, registrableAttestationKey, type VerifierKey } from './quote/attestation-key.js';
export * from './pcr-bank.js';
export * from './eventlog/event-types.js';
export * from './eventlog/event.js';
export * from './eventlog/binary.js';
export * from './eventlog/json.js';
export * from './eventlog/replay.js';
export { MeasurementLog } from './eventlog/measurement-log.js';
export * from './templates.js';
export { TpmEngine, type EngineOptions, type LoadedObject, type HashCheckTicket, type SignedAttestation } from './sim/engine.js';
export { MemoryStateStore, FileStateStore, type StateStore } from './sim/store.js';
export { SoftwareTpmDevice, openSoftwareTpm, type SoftwareTpmOptions } from './sim/device.js';
export { manufactureTpm, DEFAULT_FIRMWARE_VERSION, type EkCertificateIssuer, type EkCertificateRequest, type ManufactureOptions } from './sim/manufacture.js';
export { manufactureSoftwareTpm, ensureManufacturerCa, ekIssuer, MANUFACTURER_FILES, type ManufacturerCa, type ManufacturedTpm } from './sim/manufacturer-ca.js';
