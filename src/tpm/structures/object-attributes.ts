// TPMA_OBJECT (Part 2 §8.3): object attribute bits by their spec names.

export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
  x509sign: 1 << 19,
} as const;

export type TpmaObjectName = keyof typeof TPMA_OBJECT;

/** The attribute word with exactly the named bits set. */
export function objectAttributes(...names: readonly TpmaObjectName[]): number {
  return names.reduce((acc, n) => (acc | TPMA_OBJECT[n]) >>> 0, 0);
}

/** The names of the bits set in `attrs`, in bit order; reserved bits appear as "bit<N>". */
export function objectAttributeNames(attrs: number): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 32; bit++) {
    if (((attrs >>> bit) & 1) === 0) continue;
    const entry = Object.entries(TPMA_OBJECT).find(([, v]) => v === 1 << bit);
    out.push(entry === undefined ? `bit${bit}` : entry[0]);
  }
  return out;
}

export function hasAttributes(attrs: number, ...names: readonly TpmaObjectName[]): boolean {
  return names.every((n) => (attrs & TPMA_OBJECT[n]) !== 0);
}
