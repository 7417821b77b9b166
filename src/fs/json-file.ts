// A service's configuration file (ca.json, node.json, manager.json): read and parsed as
// JSON in one place, so each service only names what to say when it is missing and
// validates the result.
import { readFile } from 'node:fs/promises';
import { TrustlaunchError } from '../protocol/errors.js';

export interface ReadJsonFileOptions {
  /** How the file's text is read (a config holding secrets: through readSecretFile); default readFile. */
  readonly read?: (path: string) => Promise<string>;
}

/**
 * The JSON value in `path`. NOT_FOUND with `missing` (which says how to create the file)
 * when there is no such file; MALFORMED_REQUEST when it is not JSON.
 */
export async function readJsonFile(path: string, missing: string, o: ReadJsonFileOptions = {}): Promise<unknown> {
  let text: string;
  try {
    text = await (o.read ?? ((p: string) => readFile(p, 'utf8')))(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new TrustlaunchError('NOT_FOUND', missing);
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TrustlaunchError('MALFORMED_REQUEST', `${path} is not JSON`, { cause: e });
  }
}
