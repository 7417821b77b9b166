// Which PCR holds which measurement. Node (measured boot, launch gate) and CA
// (platform reference values) both read this table, so they cannot disagree.
// Indices follow the TCG PC Client Platform Firmware Profile where a role exists there
// (0: firmware, 4: boot application, 5: boot configuration); the mini-domain gets PCR 12,
// which the profile leaves to the OS, so the launch gate's extends never mix with boot's.

export const PCR = {
  /** Platform firmware (S-CRTM version and contents). */
  PLATFORM_FIRMWARE: 0,
  /** The hypervisor image, as the boot loader loaded it. */
  HYPERVISOR: 4,
  /** The node's boot configuration, which carries the frozen launch policy. */
  BOOT_CONFIG: 5,
  /** Every mini-domain launch through the launch gate (one extend per launch). */
  MINIDOMAIN: 12,
} as const;

/** The PCR selection (SHA-256 bank) every platform quote covers. */
export const PLATFORM_PCRS: readonly number[] = [PCR.PLATFORM_FIRMWARE, PCR.HYPERVISOR, PCR.BOOT_CONFIG, PCR.MINIDOMAIN];

export const PCR_COUNT = 24;
