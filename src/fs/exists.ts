// Whether a path exists, for the "refuse to overwrite" and "pick the optional file" checks.
import { stat } from 'node:fs/promises';

/** true when `path` exists (whatever it is), false on ENOENT; other errors (EACCES, …) are thrown. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}
