// Parsers of option values that more than one command takes; commander shows the
// InvalidArgumentError's text after the option's name.
import { InvalidArgumentError } from 'commander';

/** A whole number above 0 (--memory, --max-vms, --ttl). */
export function parsePositiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** `on` or `off` (--attestation). */
export function parseOnOff(text: string): 'on' | 'off' {
  if (text !== 'on' && text !== 'off') throw new InvalidArgumentError('on or off');
  return text;
}
