// `train --oom-retry`: a CUDA out-of-memory in a training step is not the end of the run. The batch is
// trained again in twice as many slices (gradients accumulated, one optimizer step: the same update as
// the whole batch, except that BatchNorm normalises each slice by its own statistics), after the caching
// allocator has returned its free blocks; the slicing that fitted is kept for the batches that follow.
import { CudaOutOfMemoryError } from '../cuda-error.ts';
import { cuda } from '../device.ts';
import { tidy } from '../tensor.ts';
import * as F from '../nn/functional.ts';
import { clipGradNorm } from '../optim/clip.ts';
import { ampForward, topkCorrect } from './evaluate.ts';
import { applyGradients, type StepFactory, type StepResult, type TrainStep } from './step.ts';

/** Sizes of `chunks` near-equal slices of n (the first ones one larger), none empty. */
export function sliceSizes(n: number, chunks: number): number[] {
  const k = Math.min(n, chunks);
  return Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0));
}

/**
 * The eager step over `chunks` slices of each batch: forward and backward per slice with its loss
 * weighted by its share of the batch (gradients add up to the whole batch's), then, once the loss is
 * agreed, one gradient sync, clipping and optimizer step, as eagerStep does.
 */
export function accumulatingStep(chunks: number): StepFactory {
  if (!Number.isInteger(chunks) || chunks < 1) throw new Error(`accumulatingStep: chunks must be a positive integer; got ${chunks}`);
  return ({ model, ddp, optimizer, scaler, clipGradNorm: clip, labelSmoothing, amp, device }) => {
    const params = model.parameters();
    const net = ddp ?? model;
    return (b, agree) => tidy(() => {
      const n = b.y.shape[0]!;
      optimizer.zeroGrad();
      let lossSum = 0;
      let top1 = 0;
      let top5 = 0;
      let start = 0;
      for (const m of sliceSizes(n, chunks)) {
        tidy(() => {
          const x = b.x.narrow(0, start, m);
          const y = b.y.narrow(0, start, m);
          const logits = ampForward((t) => net.forward(t), x, amp, device);
          const loss = F.crossEntropy(logits, y, { labelSmoothing });
          loss.mul((scaler ? scaler.scale : 1) * (m / n)).backward();
          lossSum += loss.item() * m;
          const [a, c] = topkCorrect(logits, y, 5);
          top1 += a;
          top5 += c;
        });
        start += m;
      }
      const value = agree(lossSum / n);
      if (!Number.isFinite(value)) {
        optimizer.zeroGrad();
        return { loss: value, top1: 0, top5: 0 };
      }
      applyGradients({ ddp, optimizer, scaler, clip, params });
      return { loss: value, top1, top5 };
    });
  };
}

/** Told of each retry: the slices the batch is tried in next, and the error that caused it. */
export type OomRetryListener = (chunks: number, batchSize: number, error: CudaOutOfMemoryError) => void;

/**
 * Wraps a step (eagerStep, graphStep, ...): a CudaOutOfMemoryError empties the CUDA cache and trains
 * the batch again in 2, 4, 8 ... slices until one image per slice; any other error, or an
 * out-of-memory at one image per slice, is thrown. Single-process only: ranks would disagree on
 * when to retry and wait on each other's collectives.
 */
export function withOomRetry(inner: StepFactory, onRetry?: OomRetryListener): StepFactory {
  return (parts) => {
    if (parts.ddp) throw new Error('--oom-retry: not supported with data-parallel training (an out-of-memory on one rank would desynchronise the collectives)');
    let chunks = 1;
    let step: TrainStep = inner(parts);
    return (b, agree): StepResult => {
      const n = b.y.shape[0]!;
      for (;;) {
        try {
          return step(b, agree);
        } catch (e) {
          if (!(e instanceof CudaOutOfMemoryError) || chunks >= n) throw e;
          chunks = Math.min(chunks * 2, n);
          parts.optimizer.zeroGrad();
          cuda.emptyCache();
          onRetry?.(chunks, n, e);
          step = accumulatingStep(chunks)(parts);
        }
      }
    };
  };
}
