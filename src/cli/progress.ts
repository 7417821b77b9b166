// Progress of a long command on stderr: a spinner (ora) on a terminal, one plain line per
// step otherwise (logs, CI, pipes), nothing with --json (stdout then carries one document).
import ora, { type Ora } from 'ora';

export interface Progress {
  /** A new step: the spinner's text, or a line. */
  step(text: string): void;
  succeed(text: string): void;
  fail(text: string): void;
  /** A line that stays (on a terminal, printed above the spinner). */
  note(text: string): void;
}

export function createProgress(opts: { readonly json?: boolean; readonly stream?: NodeJS.WriteStream }): Progress {
  const stream = opts.stream ?? process.stderr;
  if (opts.json === true) return { step: () => undefined, succeed: () => undefined, fail: () => undefined, note: () => undefined };
  // A terminal of unknown width (columns 0: a bare pty) gets lines too: the spinner could not
  // count the lines it has to redraw.
  if (stream.isTTY !== true || !((stream.columns ?? 0) > 0)) {
    const line = (mark: string, text: string): void => void stream.write(`${mark} ${text}\n`);
    return { step: (t) => line('·', t), succeed: (t) => line('✔', t), fail: (t) => line('✖', t), note: (t) => line(' ', t) };
  }
  let spinner: Ora | undefined;
  const spin = (text: string): Ora => (spinner ??= ora({ text, stream, discardStdin: false }).start());
  return {
    step: (t) => void (spin(t).text = t),
    succeed: (t) => {
      spin(t).succeed(t);
      spinner = undefined;
    },
    fail: (t) => {
      spin(t).fail(t);
      spinner = undefined;
    },
    note: (t) => {
      spinner?.clear();
      stream.write(`  ${t}\n`);
      spinner?.render();
    },
  };
}
