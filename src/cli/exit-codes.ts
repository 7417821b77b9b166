// Documented exit codes of the `trustlaunch` command (docs/cli.md).
export const EXIT = {
  /** Success; for `vm create` / `verify`: the VM is trusted. */
  OK: 0,
  /** An unexpected failure. */
  FAILURE: 1,
  /** Bad command line or bad input file. */
  USAGE: 2,
  /** Verification failed or the CA judged the launch contraindicated: do not trust it. */
  UNTRUSTED: 3,
  /** A service (CA, manager, node) could not be reached or is not ready. */
  UNAVAILABLE: 4,
  /** The resource asked for does not exist or is not visible. */
  NOT_FOUND: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
