// CONFIG/config.json: optional settings a person writes once instead of passing flags or
// exporting variables every time. Flags and environment variables win over it.
//
//   { "manager": { "url": "https://…", "caCertFile": "/…/ca.pem", "tokenFile": "/…/token" },
//     "sshKey": "/home/me/.ssh/id_ed25519.pub", "sshUser": "me" }
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { TrustlaunchError } from '../protocol/errors.js';
import { describeIssues } from '../protocol/messages.js';
import type { ClientPaths } from './paths.js';

const Path = z.string().min(1).max(4096);

export const ClientSettingsSchema = z.strictObject({
  manager: z.strictObject({ url: z.string().max(512).optional(), caCertFile: Path.optional(), tokenFile: Path.optional() }).optional(),
  sshKey: Path.optional(),
  sshUser: z.string().max(32).optional(),
});
export type ClientSettings = z.infer<typeof ClientSettingsSchema>;

/** The settings; {} when the file does not exist. A file that does not parse is a usage error. */
export async function readSettings(paths: ClientPaths): Promise<ClientSettings> {
  let text: string;
  try {
    text = await readFile(paths.settings, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new TrustlaunchError('MALFORMED_REQUEST', `${paths.settings} is not JSON`);
  }
  const parsed = ClientSettingsSchema.safeParse(json);
  if (!parsed.success) throw new TrustlaunchError('MALFORMED_REQUEST', `${paths.settings}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}
