// `experiment --jobs N`: trains an experiment's unfinished runs N at a time, each in a process of its own
// (`experiment <name> --job <run>@<seed>` with the same recipe flags and its share of the CPU threads). On 2
// CPU cores two single-threaded runs side by side train ~1.5x faster than one run on two threads: these
// small nets do not keep two threads busy. What a run computes does not depend on where it runs.
import { spawn, type ChildProcess } from 'node:child_process';
import { childCause, childExitCode, stoppedCleanly } from './cli.ts';
import type { ExperimentJob } from '../lib/experiments/index.ts';

export interface JobPool {
  /** How many processes run at once. */
  jobs: number;
  /** A child's command line after the node flags: the script and its arguments for a job. */
  args: (job: ExperimentJob) => string[];
  /** How a job is named in the log. */
  tag: (job: ExperimentJob) => string;
  /** What a finished job's log line says (e.g. its test error). */
  describe: (job: ExperimentJob) => string;
  log: (line: string) => void;
  /** True once this process was asked to stop (SIGINT or SIGTERM); no further job is started. */
  stopRequested: () => boolean;
}

/**
 * Runs the pending jobs through a pool of processes; a job whose run starts from another run's weights waits
 * for that run (same seed). Each child is in its own process group, so every SIGINT or SIGTERM sent here
 * reaches each child exactly once, forwarded; the children save their checkpoints and exit 130/143. When a
 * child fails, the others are stopped the same way (their checkpoints kept) and this rejects naming it; if this
 * process exits, the children are killed with it. Resolves true when every job finished, false when stopped.
 */
export function trainInProcesses(pending: readonly ExperimentJob[], p: JobPool): Promise<boolean> {
  const waiting = [...pending];
  const running = new Map<ChildProcess, ExperimentJob>();
  let failure: string | undefined;
  const ready = (j: ExperimentJob): boolean =>
    j.run.from === undefined || ![...waiting, ...running.values()].some((k) => k.run.id === j.run.from && k.seed === j.seed);
  return new Promise<boolean>((resolve, reject) => {
    const forward = (sig: NodeJS.Signals): void => {
      for (const c of running.keys()) c.kill(sig);
    };
    const killAll = (): void => {
      for (const c of running.keys()) c.kill('SIGKILL');
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    process.on('exit', killAll);
    const finish = (): void => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      process.off('exit', killAll);
      if (failure) reject(new Error(failure));
      else if (waiting.length > 0 && !p.stopRequested()) reject(new Error(`cannot start ${waiting.map(p.tag).join(', ')}: the runs they start from did not finish`));
      else resolve(waiting.length === 0);
    };
    const fail = (message: string): void => {
      if (failure) return;
      failure = message;
      forward('SIGTERM');
    };
    const startMore = (): void => {
      while (!failure && !p.stopRequested() && running.size < p.jobs) {
        const i = waiting.findIndex(ready);
        if (i < 0) break;
        const job = waiting.splice(i, 1)[0]!;
        const tag = p.tag(job);
        const child = spawn(process.execPath, [...process.execArgv, ...p.args(job)], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
        running.set(child, job);
        p.log(`${tag}: training in process ${child.pid ?? '?'}`);
        let ended = false;
        const end = (code: number, cause: string): void => {
          if (ended) return;
          ended = true;
          running.delete(child);
          if (code === 0) p.log(`${tag}: finished (${p.describe(job)})`);
          else if (stoppedCleanly(code)) {
            p.log(`${tag}: stopped, its checkpoint saved`);
            if (!p.stopRequested()) fail(`${tag} was stopped by a signal from outside; rerun the same command to continue`);
          } else fail(`${tag} failed (its process ${cause}); rerun the same command to continue from the runs' checkpoints`);
          startMore();
          if (running.size === 0) finish();
        };
        child.on('error', (e) => end(1, `could not start: ${e.message}`));
        child.on('exit', (code, signal) => end(childExitCode({ code, signal }), childCause({ code, signal })));
      }
    };
    startMore();
    if (running.size === 0) finish();
  });
}
