// What the mini-domain asserts and how it proves it (DESIGN.md §4.2 step 6): claims built
// from the hypervisor's measurements (kernel digest; a bundle's initrd and cmdline), the
// VM's own channel (host key) and dom0's untrusted launch metadata (nonce, hostname,
// authorized key); a quote of the
// platform PCRs whose qualifying data is SHA-256 of the canonical claims; the event log
// that replays to those PCRs. Any change to a claim changes the qualifying data.
import { sshFingerprint } from '../../crypto/fingerprints.js';
import { toBase64url } from '../../protocol/base64url.js';
import { canonicalBytes } from '../../protocol/canonical-json.js';
import { sha256 } from '../../protocol/digest.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { LaunchClaimsSchema, describeIssues, type Evidence, type LaunchClaims, type TpmQuote } from '../../protocol/messages.js';
import { PLATFORM_PCRS } from '../../protocol/pcrs.js';
import type { AttestationKey, AuthDevice } from '../../tpm/auth-device.js';
import { eventsToJson } from '../../tpm/eventlog/json.js';
import type { TcgEvent } from '../../tpm/eventlog/event.js';
import type { VmReport } from '../hypervisor/index.js';

/** The claims for one VM launch; MALFORMED_REQUEST when dom0's metadata is missing or bad. */
export function launchClaims(nodeId: string, report: VmReport, now: Date): LaunchClaims {
  const launch = report.launch;
  if (launch === null) throw new TrustlaunchError('MALFORMED_REQUEST', `VM ${report.name} came without launch metadata (nonce, hostname)`);
  const claims = {
    nodeId,
    vmId: report.name,
    nonce: launch.nonce,
    hostname: launch.hostname,
    kernel: report.kernelDigest,
    // A bundle's initramfs and command line, as the hypervisor measured them (LaunchClaims.initrd / .cmdline).
    ...(report.measurements.initrd === undefined ? {} : { initrd: report.measurements.initrd }),
    ...(report.measurements.cmdline === undefined ? {} : { cmdline: report.measurements.cmdline }),
    sshHostKey: report.sshHostKey,
    ...(launch.authorizedKey === undefined ? {} : { authorizedKeyFp: authorizedKeyFingerprint(launch.authorizedKey) }),
    time: Math.floor(now.getTime() / 1000),
  };
  const parsed = LaunchClaimsSchema.safeParse(claims);
  if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `launch claims: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

function authorizedKeyFingerprint(line: string): string {
  try {
    return sshFingerprint(line);
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'the authorized key is not an OpenSSH public key');
  }
}

/** SHA-256 of the canonical (RFC 8785) claims: the quote's qualifying data. */
export function claimsDigest(claims: LaunchClaims): Buffer {
  return sha256(canonicalBytes(claims));
}

/** A quote of the platform PCRs with the PCR values it covers, read in the same device order. */
export async function platformQuote(device: AuthDevice, ak: AttestationKey, qualifyingData: Uint8Array): Promise<TpmQuote> {
  const values = await device.pcrRead(PLATFORM_PCRS);
  const { attest, signature } = await device.quote(ak, PLATFORM_PCRS, qualifyingData);
  const sha256Values: Record<string, string> = {};
  for (const i of PLATFORM_PCRS) sha256Values[String(i)] = Buffer.from(values.get(i) ?? []).toString('hex');
  return { attest: toBase64url(attest), signature: toBase64url(signature), pcrs: { sha256: sha256Values } };
}

/** The evidence for one VM launch (its parts are built by the functions above, already in their wire form). */
export async function makeEvidence(o: { device: AuthDevice; ak: AttestationKey; claims: LaunchClaims; eventLog: readonly TcgEvent[] }): Promise<Evidence> {
  const quote = await platformQuote(o.device, o.ak, claimsDigest(o.claims));
  return { claims: o.claims, quote, eventLog: eventsToJson(o.eventLog) };
}
