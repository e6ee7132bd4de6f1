// A run's directory: where metrics.jsonl, summary.json, report.html and checkpoint.safetensors go, the
// temporary files of writes a crash cut short, and the writes themselves, each atomic. Only the
// writing rank (rank 0) writes; every rank may read.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { writeFileAtomically } from '../io/atomic.ts';
import type { Module } from '../nn/module.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import { readCheckpoint, saveCheckpoint, type CheckedCheckpoint, type CheckpointInfo, type TrainState } from './checkpoint.ts';
import { appendMetric, readMetrics, writeMetrics, type MetricRecord } from './metrics.ts';
import { writeReport } from './report.ts';
import type { RunSummary } from './summary.ts';

const NAMES = { checkpoint: 'checkpoint.safetensors', metrics: 'metrics.jsonl', summary: 'summary.json', report: 'report.html' } as const;

/** The paths of a run directory's files. */
export function runPaths(dir: string): Record<keyof typeof NAMES, string> {
  return { checkpoint: join(dir, NAMES.checkpoint), metrics: join(dir, NAMES.metrics), summary: join(dir, NAMES.summary), report: join(dir, NAMES.report) };
}

// Temporary files are named .<file>.<pid>.<random>.tmp by writeAtomically.
const TEMP = new RegExp(`^\\.(${Object.values(NAMES).map((n) => n.replace(/\./g, '\\.')).join('|')})\\..*\\.tmp$`);

/** Owns a run directory: creates it, removes stale temporary files, and writes every file atomically. */
export class RunFiles {
  readonly paths: Record<keyof typeof NAMES, string>;

  /** writer: whether this process writes (false on ranks other than 0). */
  constructor(readonly dir: string, readonly writer = true) {
    this.paths = runPaths(dir);
    mkdirSync(dir, { recursive: true });
    if (writer) for (const f of readdirSync(dir)) if (TEMP.test(f)) rmSync(join(dir, f), { force: true });
  }

  /**
   * A fresh run in a folder that holds an earlier run's checkpoint: that run's files move into previous-<time>/ inside
   * the folder (nothing is overwritten; --resume is how to continue it). Returns that folder, or undefined when there
   * was no checkpoint (or this process does not write).
   */
  keepPrevious(): string | undefined {
    if (!this.writer || !this.checkpointExists()) return undefined;
    const dest = join(this.dir, `previous-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    mkdirSync(dest, { recursive: true });
    for (const p of Object.values(this.paths)) if (existsSync(p)) renameSync(p, join(dest, basename(p)));
    return dest;
  }

  /** Whether a checkpoint has been written. */
  checkpointExists(): boolean {
    return existsSync(this.paths.checkpoint);
  }

  /** Reads and verifies the checkpoint against model, optimizer and weight average, applying nothing yet. */
  readCheckpoint(model: Module, optimizer: Optimizer<{ lr: number }>, ema?: Module): CheckedCheckpoint {
    return readCheckpoint(this.paths.checkpoint, model, optimizer, ema);
  }

  saveCheckpoint(model: Module, optimizer: Optimizer<{ lr: number }>, state: TrainState, info?: CheckpointInfo, ema?: Module): void {
    if (this.writer) saveCheckpoint(this.paths.checkpoint, model, optimizer, state, info, ema);
  }

  /** Rewrites metrics.jsonl with the records so far (those of the checkpoint when resuming). */
  startMetrics(history: readonly MetricRecord[]): void {
    if (this.writer) writeMetrics(this.paths.metrics, history);
  }

  appendMetric(r: MetricRecord): void {
    if (this.writer) appendMetric(this.paths.metrics, r);
  }

  writeSummary(s: RunSummary): void {
    if (this.writer) writeFileAtomically(this.paths.summary, JSON.stringify(s, null, 2) + '\n');
  }

  writeReport(title: string, history: readonly MetricRecord[], s: RunSummary): void {
    if (this.writer) writeReport(this.paths.report, title, history, s);
  }

  /** The summary and metrics of a finished run in dir. */
  static readFinished(dir: string): { summary: RunSummary; history: MetricRecord[] } {
    const p = runPaths(dir);
    return { summary: JSON.parse(readFileSync(p.summary, 'utf8')) as RunSummary, history: readMetrics(p.metrics) };
  }
}
