// `trustlaunch demo`: the narrated walk through a launch and a caught attack (src/cluster/demo.ts).
import type { Command } from 'commander';
import { runDemo } from '../../cluster/demo.js';
import { action } from '../output.js';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('show it all on this machine, in plain words: a cloud comes up, you launch and verify a VM, log in with ssh, and an attack is caught')
    .option('--keep', 'keep the temporary directory afterwards')
    .action(
      action(async (opts: { keep?: boolean }) => {
        await runDemo({ ...(opts.keep === true ? { keep: true } : {}) });
      }),
    );
}
