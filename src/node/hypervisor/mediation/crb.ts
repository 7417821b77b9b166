// Register layout of the auth device's control area, after the TPM Command Response
// Buffer interface (TCG PC Client Platform TPM Profile, §6.5.3 "CRB Interface", locality
// 0 at the start of the MMIO window). The driver puts a command in a buffer in its own
// memory, programs the buffer addresses and sizes, and writes 1 to CTRL_START; the
// device fetches the command and stores the response by DMA, then clears CTRL_START.

export const CRB = {
  CTRL_REQ: 0x40,
  CTRL_STS: 0x44,
  CTRL_CANCEL: 0x48,
  CTRL_START: 0x4c,
  CTRL_CMD_SIZE: 0x58,
  CTRL_CMD_LADDR: 0x5c,
  CTRL_CMD_HADDR: 0x60,
  CTRL_RSP_SIZE: 0x64,
  CTRL_RSP_LADDR: 0x68,
  CTRL_RSP_HADDR: 0x6c,
} as const;

/** CTRL_STS bits: tpmSts (bit 0) = the last command failed fatally (here: its DMA faulted); tpmIdle (bit 1). */
export const CRB_STS = { FATAL: 1 << 0, IDLE: 1 << 1 } as const;

/** Registers the driver may program (everything else reads as zero and ignores writes). */
export const CRB_WRITABLE: readonly number[] = [CRB.CTRL_REQ, CRB.CTRL_CANCEL, CRB.CTRL_START, CRB.CTRL_CMD_SIZE, CRB.CTRL_CMD_LADDR, CRB.CTRL_CMD_HADDR, CRB.CTRL_RSP_SIZE, CRB.CTRL_RSP_LADDR, CRB.CTRL_RSP_HADDR];
