// What a run reports: the epoch and step records (kept in the checkpoint, written to metrics.jsonl),
// and a progress bar (cli-progress) with loss, accuracy, lr, images/s and ETA.
import { appendFileSync, readFileSync } from 'node:fs';
import cliProgress from 'cli-progress';
import { writeFileAtomically } from '../io/atomic.ts';

/** One epoch's results. */
export interface EpochRecord {
  kind: 'epoch';
  epoch: number;
  step: number;
  lr: number;
  trainLoss: number;
  trainTop1: number;
  trainTop5: number;
  testLoss?: number;
  testTop1?: number;
  testTop5?: number;
  imagesPerSec: number;
  epochTime: number;
}

/** Mean training loss over a window of steps (for the loss curve). */
export interface StepRecord {
  kind: 'step';
  epoch: number;
  step: number;
  /** Fractional epoch at the end of the window. */
  x: number;
  loss: number;
  lr: number;
}

export type MetricRecord = EpochRecord | StepRecord;

/** @internal A path must be a string: Node 20's writeFileSync aborts the process on a file descriptor of -0. */
export function checkPath(path: unknown, fn: string): void {
  if (typeof path !== 'string') throw new TypeError(`${fn}: path must be a string; got ${typeof path}`);
}

/** Rewrites metrics.jsonl with the given history (one JSON object a line), atomically. */
export function writeMetrics(path: string, history: readonly MetricRecord[]): void {
  checkPath(path, 'writeMetrics');
  writeFileAtomically(path, history.map((r) => JSON.stringify(r) + '\n').join(''));
}

/** The records of a metrics.jsonl. */
export function readMetrics(path: string): MetricRecord[] {
  checkPath(path, 'readMetrics');
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as MetricRecord);
}

/** Appends one record to metrics.jsonl. */
export function appendMetric(path: string, r: MetricRecord): void {
  checkPath(path, 'appendMetric');
  appendFileSync(path, JSON.stringify(r) + '\n');
}

/** A per-epoch progress bar; on a non-TTY stream it prints a line every few seconds instead. */
export class Progress {
  private bar?: cliProgress.SingleBar;

  constructor(private readonly quiet: boolean) {}

  /** Starts the bar for an epoch of `total` batches, `start` of them done. */
  start(epoch: number, epochs: number, total: number, start: number): void {
    if (this.quiet) return;
    this.bar = new cliProgress.SingleBar(
      {
        format: `epoch ${epoch + 1}/${epochs} [{bar}] {value}/{total} | loss {loss} | top1 {top1}% | top5 {top5}% | lr {lr} | {ips} img/s | ETA {eta_formatted}`,
        stream: process.stderr,
        noTTYOutput: true,
        notTTYSchedule: 10_000,
        etaBuffer: 50,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, start, { loss: '-', top1: '-', top5: '-', lr: '-', ips: '-' });
  }

  /** Moves the bar to `value` batches with running statistics. */
  update(value: number, s: { loss: number; top1: number; top5: number; lr: number; ips: number }): void {
    this.bar?.update(value, {
      loss: s.loss.toFixed(4),
      top1: (100 * s.top1).toFixed(2),
      top5: (100 * s.top5).toFixed(2),
      lr: s.lr.toPrecision(3),
      ips: s.ips.toFixed(0),
    });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  /** Prints a line (after the bar is stopped). */
  log(line: string): void {
    if (!this.quiet) console.log(line);
  }
}
