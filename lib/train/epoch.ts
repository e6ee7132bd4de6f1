// One epoch of training: the step on each batch, the stop and NaN decisions every rank agrees on, the
// running sums and the windows of the loss curve.
import { dispose } from '../tensor.ts';
import type { DataLoader } from '../data/loader.ts';
import { worldSize } from '../distributed/index.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { LRScheduler } from '../optim/schedule.ts';
import type { Progress, MetricRecord } from './metrics.ts';
import type { Running, RunState, TrainState } from './checkpoint.ts';
import type { RunFiles } from './run-files.ts';
import { overRanks } from './ranks.ts';
import type { TrainStep } from './step.ts';

/** A NaN or infinite loss; the last checkpoint written is left as it was. */
export class NonFiniteLossError extends Error {}

/** The position and record of a run as fit() carries it from step to step. */
export type FitState = TrainState & { run: RunState };

/** Zero sums for a new epoch. */
export const freshRunning = (): Running => ({ lossSum: 0, top1: 0, top5: 0, seen: 0, windowLoss: 0, windowSteps: 0 });

/** What an epoch trains with and reports to. */
export interface EpochOptions {
  loader: DataLoader;
  step: TrainStep;
  schedule: LRScheduler;
  optimizer: Optimizer<{ lr: number }>;
  epochs: number;
  /** Steps per point of the loss curve. */
  logEvery: number;
  progress: Progress;
  files: RunFiles;
  /** Polled once a step; true stops after that step. */
  shouldStop?: () => boolean;
}

/** How an epoch ended: asked to stop (part-way), or done; the images this session trained and when it started. */
export interface EpochEnd {
  stopped: boolean;
  images: number;
  startedAt: number;
  trainSeconds: number;
}

const yieldToEvents = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Trains st.epoch from batch st.batch on, updating st; throws NonFiniteLossError on a NaN or infinite loss. */
export async function trainEpoch(st: FitState, o: EpochOptions): Promise<EpochEnd> {
  const startedAt = performance.now();
  const seenAtStart = st.run.running.seen;
  const total = o.loader.numBatches;
  let stop = false;
  // Every rank must take the same decisions, or the others would wait in a collective.
  const agree = (loss: number): number => {
    stop = o.shouldStop?.() ?? false;
    if (worldSize() === 1) return loss;
    const [bad, halt] = overRanks([Number.isFinite(loss) ? 0 : 1, stop ? 1 : 0], 'max');
    stop = halt === 1;
    return bad && Number.isFinite(loss) ? NaN : loss;
  };
  o.progress.start(st.epoch, o.epochs, total, st.batch);
  try {
    for await (const b of o.loader.epoch(st.epoch, st.batch)) {
      const lr = o.optimizer.groups[0]!.lr;
      const r = o.step(b, agree);
      const n = b.y.shape[0]!;
      dispose([b.x, b.y]);
      if (!Number.isFinite(r.loss)) {
        o.progress.stop();
        const kept = o.files.checkpointExists() ? `the last good checkpoint (${o.files.paths.checkpoint}) is kept` : 'no checkpoint had been written yet';
        throw new NonFiniteLossError(`loss became ${r.loss} at epoch ${st.epoch + 1}, step ${st.globalStep + 1} (lr ${lr}); training stopped and ${kept}. Try a lower --lr.`);
      }
      o.schedule.step();
      st.globalStep++;
      st.batch++;
      const run = st.run.running;
      run.lossSum += r.loss * n;
      run.top1 += r.top1;
      run.top5 += r.top5;
      run.seen += n;
      run.windowLoss += r.loss;
      run.windowSteps++;
      if (run.windowSteps === o.logEvery || st.batch === total) {
        const rec: MetricRecord = { kind: 'step', epoch: st.epoch, step: st.globalStep, x: st.epoch + st.batch / total, loss: run.windowLoss / run.windowSteps, lr };
        st.run.history.push(rec);
        o.files.appendMetric(rec);
        run.windowLoss = 0;
        run.windowSteps = 0;
      }
      const secs = (performance.now() - startedAt) / 1000;
      o.progress.update(st.batch, { loss: run.lossSum / run.seen, top1: run.top1 / run.seen, top5: run.top5 / run.seen, lr, ips: (run.seen - seenAtStart) / secs });
      if (stop) return { stopped: true, images: run.seen - seenAtStart, startedAt, trainSeconds: secs };
      await yieldToEvents();
    }
  } finally {
    o.progress.stop();
  }
  return { stopped: false, images: st.run.running.seen - seenAtStart, startedAt, trainSeconds: (performance.now() - startedAt) / 1000 };
}
