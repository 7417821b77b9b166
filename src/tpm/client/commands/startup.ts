// TPM2_Startup (Part 3 §9.3) and TPM2_Shutdown (Part 3 §9.4).
import type { TpmClient } from '../client.js';
import { TPM_CC, TPM_SU } from '../constants.js';
import { isTpmResponseError } from '../errors.js';
import { RC } from '../response-code.js';

export type StartupType = 'clear' | 'state';

const SU: Readonly<Record<StartupType, number>> = { clear: TPM_SU.CLEAR, state: TPM_SU.STATE };

/** TPM2_Startup: 'clear' is a TPM Reset (PCRs to their defaults); 'state' resumes a TPM2_Shutdown(STATE). */
export function startup(tpm: TpmClient, type: StartupType = 'clear'): Promise<void> {
  return tpm.run({ code: TPM_CC.Startup, parameters: (w) => w.u16(SU[type]) });
}

/** TPM2_Shutdown: an orderly shutdown, so the next Startup does not count as a TPM Reset after a failure. */
export function shutdown(tpm: TpmClient, type: StartupType = 'clear'): Promise<void> {
  return tpm.run({ code: TPM_CC.Shutdown, parameters: (w) => w.u16(SU[type]) });
}

/** TPM2_Startup(CLEAR) where TPM_RC_INITIALIZE (already started, e.g. by platform firmware) is not an error. */
export async function startupClear(tpm: TpmClient): Promise<void> {
  await startup(tpm, 'clear').catch((e: unknown) => {
    if (!isTpmResponseError(e, RC.INITIALIZE)) throw e;
  });
}
