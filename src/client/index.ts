// The public API of the user client SDK (docs/client.md).
export { TrustlaunchClient, type OpenClientOptions, type ListedVm, type ReceiptCheck } from './client.js';
export { createVm, type CreateVmRequest, type CreatedVm, type LaunchDeps, type LaunchStage, type LaunchTimings } from './create.js';
export { verifyLaunch, LAUNCH_CHECKS, type LaunchCheck, type LaunchExpectations, type VerifiedLaunch, type ReceiptBundle } from './verify.js';
export { verifyOffline, readReceiptInput, parseReceiptInput, type OfflineOptions } from './offline.js';
export { trustCa, loadPinnedCa, readIdentityFile, parseCaUrl, type TrustedCa, type TrustCaOptions, type TrustCaResult } from './pinned-ca.js';
export { CaReceipts, type CaReceipt } from './ca-receipts.js';
export { ManagerApi, type ManagerConnection, type ManagerVm } from './manager-api.js';
export { clientPaths, configDir, ensureClientDir, type ClientPaths } from './paths.js';
export { readSettings, type ClientSettings } from './settings.js';
export { resolveLoginKey, type LoginKey } from './ssh-key.js';
export { addKnownHost, removeKnownHost, knownAliases, knownHostLines, type KnownHostEntry } from './known-hosts.js';
export { readVmRecord, listVmRecords, type VmRecord } from './records.js';
export { sshArguments, shellLine, checkEndpoint, probeHostKey, presentedHostKeys, type SshEndpoint } from './ssh-endpoint.js';
