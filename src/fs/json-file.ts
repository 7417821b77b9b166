// A service's configuration file (ca.json, node.json): read and parsed as JSON in one place,
// so each service only names what to say when it is missing and validates the result.
import { readFile } from 'node:fs/promises';
import { TrustlaunchError } from '../protocol/errors.js';

/**
 * The JSON value in `path`. NOT_FOUND with `missing` (which says how to create the file)
 * when there is no such file; MALFORMED_REQUEST when it is not JSON.
 */
export async function readJsonFile(path: string, missing: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
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
