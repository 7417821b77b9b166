// The user's own trustlaunch directory (docs/client.md "Files"): what the client pinned,
// verified and generated. Found by, first found wins:
//   --config-dir DIR,  TRUSTLAUNCH_CONFIG_DIR,  $XDG_CONFIG_HOME/trustlaunch,  ~/.config/trustlaunch
// (XDG Base Directory Specification: an unset, empty or relative XDG_CONFIG_HOME is ignored.)
import { mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

export interface ClientPaths {
  readonly dir: string;
  /** The pinned CA: its URL and identity document (written by `ca trust`). */
  readonly pinnedCa: string;
  /** trustlaunch's own known_hosts: written only after a launch verified. */
  readonly knownHosts: string;
  /** One record per verified VM: `vms/<vmId>.json` (receipt, host certificate, nonce). */
  readonly vms: string;
  /** The login key trustlaunch generates when the user has none (`id_ed25519`, `.pub`). */
  readonly generatedKey: string;
  /** Optional settings a person may write: manager URL, its TLS CA, token file, ssh key. */
  readonly settings: string;
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v.trim() === '' ? undefined : v.trim());

/** The config directory the flag, environment or XDG default names. */
export function configDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = nonEmpty(flag) ?? nonEmpty(env['TRUSTLAUNCH_CONFIG_DIR']);
  if (explicit !== undefined) return resolve(explicit);
  const xdg = nonEmpty(env['XDG_CONFIG_HOME']);
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(nonEmpty(env['HOME']) ?? homedir(), '.config');
  return join(base, 'trustlaunch');
}

export function clientPaths(dir: string): ClientPaths {
  return {
    dir,
    pinnedCa: join(dir, 'ca.json'),
    knownHosts: join(dir, 'known_hosts'),
    vms: join(dir, 'vms'),
    generatedKey: join(dir, 'id_ed25519'),
    settings: join(dir, 'config.json'),
  };
}

/** Creates the directory (0700: it holds a private key) and `vms/`. */
export async function ensureClientDir(paths: ClientPaths): Promise<void> {
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  await mkdir(paths.vms, { recursive: true, mode: 0o700 });
}
