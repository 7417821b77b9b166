// The mini-domain (DESIGN.md §3.3): the attestation agent and what the node needs to
// launch it — the image of its code and the entry hook the hypervisor calls after the gate.
export { miniDomainEntry } from './entry.js';
export { MiniDomainAgent, type AgentLogEvent, type AgentSettings } from './agent.js';
export { installedImage, installedImageDigest, checkMeasuredImage, packImage, unpackImage, readAgentSources, IMAGE_FORMAT } from './image.js';
export { CaClient, EvidenceAnswerSchema, type EvidenceAnswer } from './ca-client.js';
export { launchClaims, claimsDigest, makeEvidence, platformQuote } from './evidence.js';
export { readCaCertificate, readRegistration, type RegistrationRecord } from './nv-records.js';
export { openMiniDomainDevice } from './device.js';
export { DEFAULT_BACKOFF, backoffDelay, type BackoffPolicy } from './backoff.js';
