// What the scripts share: argument parsers for their commander definitions (a bad value becomes
// commander's "error: option '--x <n>' argument 'y' is invalid. expected ..." and exit code 2), and
// stopping a run cleanly on SIGINT or SIGTERM.
import { constants } from 'node:os';
import { InvalidArgumentError } from 'commander';

/** An integer >= min. */
export const int = (min: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}`);
  return n;
};

/** A finite number >= min. */
export const float = (min: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < min) throw new InvalidArgumentError(`expected a number >= ${min}`);
  return n;
};

/** A comma-separated list of integers >= 0. */
export const ints = (v: string): number[] => v.split(',').map((s) => int(0)(s.trim()));

/**
 * The name a script's usage line shows: "resnet-ts eval" when the `resnet-ts` command runs it (it sets the name),
 * else the script's own (npm run eval-imagenet).
 */
export const commandName = (script: string): string => ((globalThis as Record<symbol, unknown>)[Symbol.for('resnet-ts.command')] as string | undefined) ?? script;

/** Positive integer (>= 1). */
export const positiveInt = int(1);

/** The exit code of a run stopped by a signal, 128 + its number as a shell reports it: 130 for SIGINT, 143 for SIGTERM. */
export const signalExitCode = (signal: NodeJS.Signals): number => 128 + (constants.signals[signal] ?? 0);

/** How a child process ended (its 'exit' event). */
export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}
/** A child's exit as a shell reports it (128 + the signal's number when killed). */
export const childExitCode = (e: ChildExit): number => e.code ?? (e.signal ? signalExitCode(e.signal) : 1);
/** A child's end in words, for error messages. */
export const childCause = (e: ChildExit): string => (e.code !== null ? `exited with code ${e.code}` : `was killed by ${e.signal}`);
/** A run stopped by SIGINT or SIGTERM saved its checkpoint and exited 130 or 143 (or it finished: 0). */
export const stoppedCleanly = (code: number): boolean => code === 0 || code === signalExitCode('SIGINT') || code === signalExitCode('SIGTERM');

/**
 * Stops a run cleanly on SIGINT (Ctrl-C) or SIGTERM (kill, systemd, Kubernetes): the first asks for a
 * checkpoint after the step in progress; a second Ctrl-C exits at once without saving. A repeated
 * SIGTERM changes nothing: systemd signals every process of a service and the launcher forwards its own.
 */
export function stopOnSignals(hint = ''): { requested: () => boolean; exitCode: () => number } {
  let first: NodeJS.Signals | undefined;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (first && sig === 'SIGINT') {
        process.stderr.write('\ninterrupted again: exiting now without saving\n');
        process.exit(signalExitCode(first));
      }
      if (first) return;
      first = sig;
      process.stderr.write(`\n${sig === 'SIGINT' ? 'interrupt' : 'SIGTERM'}: saving a checkpoint after this step (Ctrl-C again to exit at once)${hint}\n`);
    });
  }
  return { requested: () => first !== undefined, exitCode: () => signalExitCode(first ?? 'SIGINT') };
}
