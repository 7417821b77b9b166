// The node's boot configuration and the launch policy frozen from it at boot (DESIGN.md
// §3.1; claims 4 and 8: the "second hash" the hypervisor holds from its boot, in memory
// dom0 cannot change). The configuration's canonical bytes are what measured boot
// extends into PCR 5, so the CA sees exactly which policy the node enforces. The policy
// object has no setter; it is deep-frozen and wrapped so that any attempt to change it
// fails loudly with LAUNCH_POLICY_FROZEN (and is recorded) instead of failing silently.
import { z } from 'zod';
import { canonicalBytes } from '../../protocol/canonical-json.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { Digest } from '../../protocol/digest.js';
import { DigestSchema, IdSchema, describeIssues } from '../../protocol/messages.js';

/** Upper bound of the canonical boot configuration (it travels whole in one event-log entry). */
export const MAX_BOOT_CONFIG_BYTES = 8 * 1024;

export const BootConfigSchema = z.strictObject({
  v: z.literal(1),
  nodeId: IdSchema,
  launchPolicy: z.strictObject({
    /** SHA-256 of the one mini-domain kernel image this node may launch. */
    miniDomainDigest: DigestSchema,
  }),
});
export type BootConfig = z.infer<typeof BootConfigSchema>;

export interface LaunchPolicy {
  readonly nodeId: string;
  readonly miniDomainDigest: Digest;
}

/** Parses a boot configuration; BOOT_CONFIG_INVALID for anything else. */
export function parseBootConfig(input: unknown): BootConfig {
  const parsed = BootConfigSchema.safeParse(input);
  if (!parsed.success) throw new TrustlaunchError('BOOT_CONFIG_INVALID', describeIssues(parsed.error));
  return parsed.data;
}

/** The canonical (RFC 8785) bytes of a configuration: what PCR 5 measures. */
export function bootConfigBytes(config: BootConfig): Buffer {
  const bytes = canonicalBytes(config);
  if (bytes.length > MAX_BOOT_CONFIG_BYTES) throw new TrustlaunchError('BOOT_CONFIG_INVALID', `the boot configuration exceeds ${MAX_BOOT_CONFIG_BYTES} bytes`);
  return bytes;
}

/**
 * Freezes the launch policy of a parsed configuration. The result is a frozen object
 * behind a proxy whose every mutating trap throws LAUNCH_POLICY_FROZEN after telling
 * `onAttempt` (the hypervisor records a security event).
 */
export function freezeLaunchPolicy(config: BootConfig, onAttempt: (operation: string, property: string) => void = () => undefined): LaunchPolicy {
  const target: LaunchPolicy = Object.freeze({ nodeId: config.nodeId, miniDomainDigest: config.launchPolicy.miniDomainDigest });
  const refuse = (operation: string, property: PropertyKey): never => {
    onAttempt(operation, String(property));
    throw new TrustlaunchError('LAUNCH_POLICY_FROZEN', `the launch policy is frozen at boot (${operation} ${String(property)})`);
  };
  return new Proxy(target, {
    set: (_t, p) => refuse('set', p),
    defineProperty: (_t, p) => refuse('defineProperty', p),
    deleteProperty: (_t, p) => refuse('deleteProperty', p),
    setPrototypeOf: () => refuse('setPrototypeOf', '[[Prototype]]'),
  });
}
