// What every long-running `… serve` command does once its service is up: wait for SIGINT
// or SIGTERM, then stop the service. One place, so the CA, the manager and the node stop
// the same way.

/**
 * Resolves on the first SIGINT or SIGTERM and removes its handlers again. With `onSecond`,
 * a second SIGINT or SIGTERM (while the caller is stopping) runs it instead (`up` exits at once).
 */
export function untilStopSignal(onSecond?: () => void): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (onSecond !== undefined) {
        process.once('SIGINT', onSecond);
        process.once('SIGTERM', onSecond);
      }
      resolve(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** Waits for SIGINT or SIGTERM, then runs `stop` (the service's close). */
export async function serveUntilSignal(stop: () => Promise<void>): Promise<void> {
  await untilStopSignal();
  await stop();
}
