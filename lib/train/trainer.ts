// The training loop: fit() trains and evaluates epoch by epoch, reports progress, writes metrics,
// the report and a checkpoint each epoch (and when asked to stop), and resumes from one exactly.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, autocast, dispose, noGrad, tidy, type Device } from '../tensor.ts';
import * as F from '../nn/functional.ts';
import type { Module } from '../nn/module.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { LRScheduler } from '../optim/schedule.ts';
import { GradScaler } from '../optim/grad-scaler.ts';
import { clipGradNorm } from '../optim/clip.ts';
import type { DataLoader } from '../data/loader.ts';
import { loadCheckpoint, saveCheckpoint, type TrainState } from './checkpoint.ts';
import { Progress, appendMetric, writeMetrics, type EpochRecord, type MetricRecord } from './metrics.ts';
import { writeReport } from './report.ts';
import { allreduce, rank as distRank, worldSize as distWorldSize, type DistributedDataParallel } from '../distributed/index.ts';
import { tensor } from '../creation.ts';

export type Amp = 'bf16' | 'fp16';

export interface FitOptions {
  model: Module;
  optimizer: Optimizer<{ lr: number }>;
  scheduler: LRScheduler;
  trainLoader: DataLoader;
  testLoader?: DataLoader;
  epochs: number;
  /** Where metrics.jsonl, summary.json, report.html and checkpoint.safetensors go. */
  outDir: string;
  resume?: boolean;
  labelSmoothing?: number;
  clipGradNorm?: number;
  amp?: Amp;
  device?: Device;
  /** Name and flags recorded in summary.json. */
  modelName?: string;
  config?: Record<string, unknown>;
  /** Steps per point of the training-loss curve. */
  logEvery?: number;
  quiet?: boolean;
  /** Polled after every step; true saves a checkpoint and returns with interrupted set. */
  shouldStop?: () => boolean;
  /**
   * Data-parallel training: forward through ddp (rank 0's buffers), gradients averaged over ranks
   * after backward, metrics summed over ranks; only rank 0 writes files. The loaders must be
   * sharded (LoaderOptions.shard). Stopping and NaN checks are agreed by all ranks each step.
   */
  ddp?: DistributedDataParallel<Module>;
}

export interface FitResult {
  summary: Record<string, unknown>;
  interrupted: boolean;
}

/** A NaN or infinite loss; the last checkpoint written is left as it was. */
export class NonFiniteLossError extends Error {}

interface Running {
  lossSum: number;
  top1: number;
  top5: number;
  seen: number;
  windowLoss: number;
  windowSteps: number;
}

interface State extends TrainState {
  history: MetricRecord[];
  running: Running;
  wallTime: number;
}

const freshRunning = (): Running => ({ lossSum: 0, top1: 0, top5: 0, seen: 0, windowLoss: 0, windowSteps: 0 });

/** Correct top-1 and top-k predictions in a batch. */
function topkCorrect(logits: Tensor, y: Tensor, k: number): [number, number] {
  return tidy(() => {
    const hit = logits.topk(Math.min(k, logits.shape[1]!), 1).indices.eq(y.unsqueeze(1)).to('float32');
    return [hit.select(1, 0).sum().item(), hit.sum().item()];
  });
}

function forward(model: Module | DistributedDataParallel<Module>, x: Tensor, amp: Amp | undefined, device: Device): Tensor {
  if (!amp) return model.forward(x);
  const out = autocast(() => model.forward(x), { dtype: amp === 'bf16' ? 'bfloat16' : 'float16', device: device.startsWith('cuda') ? 'cuda' : 'cpu' });
  return out.to('float32');
}

/** Sums of numbers over all ranks (the numbers themselves when not distributed). */
function sumOverRanks(values: number[], op: 'sum' | 'max' = 'sum'): number[] {
  if (distWorldSize() === 1) return values;
  return tidy(() => {
    const t = tensor(values, { dtype: 'float64' });
    allreduce([t], op);
    return Array.from(t.toArray() as Float64Array);
  });
}

/** Mean loss and top-1/top-5 accuracy (fractions) of a model over a loader, in eval mode. */
export async function evaluate(model: Module, loader: DataLoader, { amp, device = 'cpu', labelSmoothing = 0 }: { amp?: Amp; device?: Device; labelSmoothing?: number } = {}): Promise<{ loss: number; top1: number; top5: number; images: number }> {
  const wasTraining = model.training;
  model.eval();
  let loss = 0;
  let top1 = 0;
  let top5 = 0;
  let n = 0;
  try {
    for await (const b of loader.epoch(0)) {
      noGrad(() => tidy(() => {
        const logits = forward(model, b.x, amp, device);
        loss += F.crossEntropy(logits, b.y, { labelSmoothing, reduction: 'sum' }).item();
        const [c1, c5] = topkCorrect(logits, b.y, 5);
        top1 += c1;
        top5 += c5;
        n += b.y.shape[0]!;
      }));
      dispose([b.x, b.y]);
    }
  } finally {
    model.train(wasTraining);
  }
  const sums = sumOverRanks([loss, top1, top5, n]);
  [loss, top1, top5, n] = [sums[0]!, sums[1]!, sums[2]!, sums[3]!];
  return { loss: loss / n, top1: top1 / n, top5: top5 / n, images: n };
}

const yieldToEvents = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Trains for o.epochs epochs (continuing a checkpoint with o.resume) and returns the summary. */
export async function fit(o: FitOptions): Promise<FitResult> {
  const { model, optimizer, scheduler, trainLoader, testLoader, epochs, outDir, device = 'cpu', amp, ddp } = o;
  const world = distWorldSize();
  const main = distRank() === 0;
  if (world > 1 && !ddp) throw new Error('fit: a distributed process group is initialised but no ddp wrapper was given');
  if (world > 1 && (!trainLoader.options.shard || (testLoader && !testLoader.options.shard))) throw new Error('fit: data-parallel training needs sharded loaders (LoaderOptions.shard)');
  mkdirSync(outDir, { recursive: true });
  const paths = {
    checkpoint: join(outDir, 'checkpoint.safetensors'),
    metrics: join(outDir, 'metrics.jsonl'),
    summary: join(outDir, 'summary.json'),
    report: join(outDir, 'report.html'),
  };
  // Temporary files of checkpoint writes cut short by a crash; the checkpoint itself is never partial.
  if (main) for (const f of readdirSync(outDir)) if (/^\.checkpoint\.safetensors\..*\.tmp$/.test(f)) rmSync(join(outDir, f), { force: true });
  const scaler = amp === 'fp16' ? new GradScaler() : undefined;
  let st: State = { epoch: 0, batch: 0, globalStep: 0, scheduler: { steps: 0 }, history: [], running: freshRunning(), wallTime: 0 };
  if (o.resume && existsSync(paths.checkpoint)) {
    st = loadCheckpoint(paths.checkpoint, model, optimizer) as State;
    scheduler.loadStateDict(st.scheduler);
    if (scaler && st.scaler) scaler.loadStateDict(st.scaler);
    if (!main) st.running = { ...freshRunning(), windowLoss: st.running.windowLoss, windowSteps: st.running.windowSteps };
  }
  if (main) writeMetrics(paths.metrics, st.history);
  const sessionStart = performance.now();
  const wall = (): number => st.wallTime + (performance.now() - sessionStart) / 1000;
  const save = (): void => {
    // Mid-epoch running sums are per rank: the checkpoint holds their totals (rank 0 resumes them).
    const [lossSum, top1, top5, seen] = sumOverRanks([st.running.lossSum, st.running.top1, st.running.top5, st.running.seen]);
    if (!main) return;
    const running = { ...st.running, lossSum: lossSum!, top1: top1!, top5: top5!, seen: seen! };
    saveCheckpoint(paths.checkpoint, model, optimizer, { ...st, running, scheduler: scheduler.stateDict(), scaler: scaler?.stateDict(), wallTime: wall() });
  };
  const progress = new Progress((o.quiet ?? false) || !main);
  const logEvery = o.logEvery ?? 50;
  const total = trainLoader.numBatches;
  const params = model.parameters();
  model.train();

  const summarize = (): Record<string, unknown> => {
    const eps = st.history.filter((r): r is EpochRecord => r.kind === 'epoch');
    const last = eps[eps.length - 1];
    const best = eps.reduce<EpochRecord | undefined>((b, r) => (r.testTop1 !== undefined && (!b || r.testTop1 > b.testTop1!) ? r : b), undefined);
    return {
      testAccuracy: last?.testTop1, testTop5: last?.testTop5, testLoss: last?.testLoss, trainAccuracy: last?.trainTop1, trainLoss: last?.trainLoss,
      epochs: eps.length, bestEpoch: best ? best.epoch + 1 : undefined, bestTestAccuracy: best?.testTop1, steps: st.globalStep,
      wallTime: Number(wall().toFixed(2)), model: o.modelName, worldSize: world, device, flags: o.config ?? {},
    };
  };

  for (; st.epoch < epochs; st.epoch++) {
    const epochStart = performance.now();
    const seenAtStart = st.running.seen;
    progress.start(st.epoch, epochs, total, st.batch);
    for await (const b of trainLoader.epoch(st.epoch, st.batch)) {
      const lr = optimizer.groups[0]!.lr;
      let stop = false;
      const r = tidy(() => {
        const logits = forward(ddp ?? model, b.x, amp, device);
        const loss = F.crossEntropy(logits, b.y, { labelSmoothing: o.labelSmoothing ?? 0 });
        let value = loss.item();
        stop = o.shouldStop?.() ?? false;
        if (world > 1) {
          // Every rank must take the same decision, or the others would wait in a collective.
          const [bad, halt] = sumOverRanks([Number.isFinite(value) ? 0 : 1, stop ? 1 : 0], 'max');
          if (bad && Number.isFinite(value)) value = NaN;
          stop = halt === 1;
        }
        if (!Number.isFinite(value)) return { value, c1: 0, c5: 0 };
        optimizer.zeroGrad();
        (scaler ? loss.mul(scaler.scale) : loss).backward();
        ddp?.syncGradients();
        if (scaler) {
          scaler.step(optimizer);
        } else {
          if (o.clipGradNorm) clipGradNorm(params, o.clipGradNorm);
          optimizer.step();
        }
        const [c1, c5] = topkCorrect(logits, b.y, 5);
        return { value, c1, c5 };
      });
      const n = b.y.shape[0]!;
      dispose([b.x, b.y]);
      if (!Number.isFinite(r.value)) {
        progress.stop();
        const kept = existsSync(paths.checkpoint) ? `the last good checkpoint (${paths.checkpoint}) is kept` : 'no checkpoint had been written yet';
        throw new NonFiniteLossError(`loss became ${r.value} at epoch ${st.epoch + 1}, step ${st.globalStep + 1} (lr ${lr}); training stopped and ${kept}. Try a lower --lr.`);
      }
      scheduler.step();
      st.globalStep++;
      st.batch++;
      const run = st.running;
      run.lossSum += r.value * n;
      run.top1 += r.c1;
      run.top5 += r.c5;
      run.seen += n;
      run.windowLoss += r.value;
      run.windowSteps++;
      if (run.windowSteps === logEvery || st.batch === total) {
        const rec: MetricRecord = { kind: 'step', epoch: st.epoch, step: st.globalStep, x: st.epoch + st.batch / total, loss: run.windowLoss / run.windowSteps, lr };
        st.history.push(rec);
        if (main) appendMetric(paths.metrics, rec);
        run.windowLoss = 0;
        run.windowSteps = 0;
      }
      const secs = (performance.now() - epochStart) / 1000;
      progress.update(st.batch, { loss: run.lossSum / run.seen, top1: run.top1 / run.seen, top5: run.top5 / run.seen, lr, ips: (run.seen - seenAtStart) / secs });
      if (stop) {
        progress.stop();
        save();
        if (main) progress.log(`stopped at epoch ${st.epoch + 1}, batch ${st.batch}/${total}; checkpoint saved to ${paths.checkpoint} (continue with --resume)`);
        return { summary: summarize(), interrupted: true };
      }
      await yieldToEvents();
    }
    progress.stop();
    const trainSecs = (performance.now() - epochStart) / 1000;
    const test = testLoader ? await evaluate(model, testLoader, { amp, device, labelSmoothing: o.labelSmoothing }) : undefined;
    const [lossSum, top1, top5, seen, seenNow] = sumOverRanks([st.running.lossSum, st.running.top1, st.running.top5, st.running.seen, st.running.seen - seenAtStart]);
    const run = { lossSum: lossSum!, top1: top1!, top5: top5!, seen: seen! };
    const rec: EpochRecord = {
      kind: 'epoch', epoch: st.epoch, step: st.globalStep, lr: optimizer.groups[0]!.lr,
      trainLoss: run.lossSum / run.seen, trainTop1: run.top1 / run.seen, trainTop5: run.top5 / run.seen,
      testLoss: test?.loss, testTop1: test?.top1, testTop5: test?.top5,
      imagesPerSec: Number((seenNow! / trainSecs).toFixed(1)), epochTime: Number(((performance.now() - epochStart) / 1000).toFixed(2)),
    };
    st.history.push(rec);
    if (main) appendMetric(paths.metrics, rec);
    st.batch = 0;
    st.running = freshRunning();
    if (main) progress.log(
      `epoch ${st.epoch + 1}/${epochs}: train loss ${rec.trainLoss.toFixed(4)} top1 ${(100 * rec.trainTop1).toFixed(2)}%` +
        (test ? ` | test loss ${test.loss.toFixed(4)} top1 ${(100 * test.top1).toFixed(2)}% top5 ${(100 * test.top5).toFixed(2)}%` : '') +
        ` | ${rec.imagesPerSec} img/s | ${rec.epochTime}s`,
    );
    const next = { ...st, epoch: st.epoch + 1 };
    if (main) {
      saveCheckpoint(paths.checkpoint, model, optimizer, { ...next, scheduler: scheduler.stateDict(), scaler: scaler?.stateDict(), wallTime: wall() });
      writeReport(paths.report, `${o.modelName ?? 'model'} training report`, st.history, summarize());
    }
  }
  const summary = summarize();
  if (main) {
    writeFileSync(paths.summary, JSON.stringify(summary, null, 2) + '\n');
    writeReport(paths.report, `${o.modelName ?? 'model'} training report`, st.history, summary);
  }
  return { summary, interrupted: false };
}
