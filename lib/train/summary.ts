// A run's summary (summary.json): the last and best epoch's numbers, size, time and configuration.
import type { Device } from '../tensor.ts';
import type { EpochRecord, MetricRecord } from './metrics.ts';

/** A JSON value, as a run's configuration is recorded. */
export type ConfigValue = string | number | boolean | null | undefined | readonly ConfigValue[] | { readonly [k: string]: ConfigValue };

/** What summary.json holds; accuracies and losses are of the last epoch, as fractions. */
export interface RunSummary {
  testAccuracy?: number;
  testTop5?: number;
  testLoss?: number;
  /** Running accuracy and loss over the last epoch's training batches. */
  trainAccuracy?: number;
  trainLoss?: number;
  epochs: number;
  /** 1-based epoch of the best test accuracy. */
  bestEpoch?: number;
  bestTestAccuracy?: number;
  steps: number;
  /** Seconds of training and evaluation over all sessions. */
  wallTime: number;
  model?: string;
  worldSize: number;
  device: Device;
  /** The configuration the run was started with (the command line's flags). */
  flags: { readonly [k: string]: ConfigValue };
}

/** The summary of a history of metric records. */
export function summarize(history: readonly MetricRecord[], o: Pick<RunSummary, 'steps' | 'wallTime' | 'model' | 'worldSize' | 'device' | 'flags'>): RunSummary {
  const eps = history.filter((r): r is EpochRecord => r.kind === 'epoch');
  const last = eps[eps.length - 1];
  const best = eps.reduce<EpochRecord | undefined>((b, r) => (r.testTop1 !== undefined && (!b || r.testTop1 > b.testTop1!) ? r : b), undefined);
  return {
    testAccuracy: last?.testTop1, testTop5: last?.testTop5, testLoss: last?.testLoss, trainAccuracy: last?.trainTop1, trainLoss: last?.trainLoss,
    epochs: eps.length, bestEpoch: best ? best.epoch + 1 : undefined, bestTestAccuracy: best?.testTop1, steps: o.steps,
    wallTime: Number(o.wallTime.toFixed(2)), model: o.model, worldSize: o.worldSize, device: o.device, flags: o.flags,
  };
}
