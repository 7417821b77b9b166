// trustlaunch's own known_hosts file (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"), apart from the
// user's ~/.ssh/known_hosts. For each verified VM it holds, under the VM id as host name
// (`ssh -o HostKeyAlias=<vmId>`):
//
//   # trustlaunch <vmId> <name>: receipt <jti> from <CA issuer>, verified <time>
//   <vmId> ssh-ed25519 AAAA…                          the attested host key itself
//   @cert-authority <vmId> ssh-ed25519 AAAA…          the CA's SSH key, for this VM's name only
//
// Either line alone lets a strict `ssh` in; both are written only after every check passed.
// Changes are atomic (a reader sees the old file or the new one) and serialised by a lock.
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../crypto/files.js';
import { formatSshPublicKey, parseSshPublicKey } from '../crypto/ssh-keys.js';
import { withFileLock } from './file-lock.js';

export interface KnownHostEntry {
  /** The host name the lines are for: the VM id. */
  readonly alias: string;
  /** The attested host key (`type base64`). */
  readonly hostKey: string;
  /** The pinned CA's SSH CA key (`ssh-ed25519 base64`). */
  readonly sshCaKey: string;
  /** One line of context, written as a comment. */
  readonly comment: string;
}

const MAX_FILE_BYTES = 16 * 1024 * 1024;

/** The lines written for one VM. */
export function knownHostLines(e: KnownHostEntry): string[] {
  if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(e.alias)) throw new TypeError(`not a host alias: ${JSON.stringify(e.alias)}`);
  const key = formatSshPublicKey(parseSshPublicKey(e.hostKey).key);
  const ca = formatSshPublicKey(parseSshPublicKey(e.sshCaKey).key);
  return [`# trustlaunch ${e.alias} ${e.comment.replace(/[\r\n]/g, ' ')}`, `${e.alias} ${key}`, `@cert-authority ${e.alias} ${ca}`];
}

async function readLines(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  if (text.length > MAX_FILE_BYTES) throw new RangeError(`${file} is larger than ${MAX_FILE_BYTES} bytes`);
  return text.split('\n').filter((l) => l !== '');
}

/** Whether a line belongs to `alias` (its comment, its key line or its @cert-authority line). */
function belongsTo(line: string, alias: string): boolean {
  const fields = line.trim().split(/\s+/);
  if (fields[0] === '#') return fields[1] === 'trustlaunch' && fields[2] === alias;
  if (fields[0] === '@cert-authority') return fields[1] === alias;
  return fields[0] === alias;
}

async function rewrite(file: string, change: (lines: string[]) => string[]): Promise<void> {
  await withFileLock(file, async () => {
    const before = await readLines(file);
    const after = change(before);
    if (after.join('\n') === before.join('\n')) return;
    await writeFileAtomic(file, after.length === 0 ? '' : `${after.join('\n')}\n`, 0o644);
  });
}

/** Adds (or replaces) the lines of one VM. */
export async function addKnownHost(file: string, entry: KnownHostEntry): Promise<void> {
  const lines = knownHostLines(entry);
  await rewrite(file, (before) => [...before.filter((l) => !belongsTo(l, entry.alias)), ...lines]);
}

/** Removes the lines of one VM; true when there were any. */
export async function removeKnownHost(file: string, alias: string): Promise<boolean> {
  let removed = false;
  await rewrite(file, (before) => {
    const kept = before.filter((l) => !belongsTo(l, alias));
    removed = kept.length !== before.length;
    return kept;
  });
  return removed;
}

/** The aliases with a key line or @cert-authority line in the file. */
export async function knownAliases(file: string): Promise<Set<string>> {
  const aliases = new Set<string>();
  for (const line of await readLines(file)) {
    const fields = line.trim().split(/\s+/);
    if (fields[0] === '#') continue;
    const alias = fields[0] === '@cert-authority' ? fields[1] : fields[0];
    if (alias !== undefined) aliases.add(alias);
  }
  return aliases;
}
