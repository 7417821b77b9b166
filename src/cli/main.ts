import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { EXIT } from './exit-codes.js';
import { registerNodeCommands } from './commands/node.js';
import { registerManagerCommands } from './commands/manager.js';
import { registerImageCommands } from './commands/image.js';
import { registerCaCommands } from './commands/ca.js';
import { registerTrustCommand } from './commands/trust.js';
import { registerVmCommands } from './commands/vm.js';
import { registerVerifyCommand } from './commands/verify.js';
import { registerUpCommand } from './commands/up.js';
import { registerDemoCommand } from './commands/demo.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Builds the command tree. Each area of the CLI registers its own subcommands. */
export function buildProgram(): Command {
  const program = new Command('trustlaunch')
    .description('Attested VM launch for clouds whose operators are not trusted')
    .version(pkg.version, '-V, --version')
    .showHelpAfterError()
    .exitOverride();
  registerNodeCommands(program);
  registerManagerCommands(program);
  registerImageCommands(program);
  registerCaCommands(program);
  registerTrustCommand(program);
  registerVmCommands(program);
  registerVerifyCommand(program);
  registerUpCommand(program);
  registerDemoCommand(program);
  return program;
}

/** Runs the CLI and resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end through exitOverride with exitCode 0.
      return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    throw e;
  }
}
