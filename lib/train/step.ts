// One optimisation step as a replaceable piece: fit() calls a TrainStep per batch. The eager step is
// the default; a captured (CUDA-graph) step or one that retries with half the batch has the same shape.
import { tidy, type Device, type Tensor } from '../tensor.ts';
import type { Amp } from '../device.ts';
import * as F from '../nn/functional.ts';
import type { Module } from '../nn/module.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { GradScaler } from '../optim/grad-scaler.ts';
import { clipGradNorm } from '../optim/clip.ts';
import type { Batch } from '../data/loader.ts';
import type { DistributedDataParallel } from '../distributed/index.ts';
import { ampForward, topkCorrect } from './evaluate.ts';

/** A step's loss (NaN or infinite when it was not applied) and correct top-1/top-5 predictions. */
export interface StepResult {
  loss: number;
  top1: number;
  top5: number;
}

/**
 * Trains on one batch (which the caller disposes). `agree` must be called once with the loss before
 * any update: it returns the loss all ranks agreed on, NaN when any rank's was not finite, in which
 * case nothing may be updated.
 */
export type TrainStep = (batch: Batch, agree: (loss: number) => number) => StepResult;

/** What a step is made of. */
export interface StepParts {
  model: Module;
  ddp?: DistributedDataParallel<Module>;
  optimizer: Optimizer<{ lr: number }>;
  scaler?: GradScaler;
  clipGradNorm?: number;
  labelSmoothing: number;
  amp?: Amp;
  device: Device;
}

/** Makes the step fit() runs. */
export type StepFactory = (parts: StepParts) => TrainStep;

/** After backward: averages the gradients over ranks, then the scaler's step, or clipping and the optimizer step. */
export function applyGradients(o: { ddp?: StepParts['ddp']; optimizer: StepParts['optimizer']; scaler?: StepParts['scaler']; clip?: number; params: Tensor[] }): void {
  o.ddp?.syncGradients();
  if (o.scaler) {
    o.scaler.step(o.optimizer);
  } else {
    if (o.clip) clipGradNorm(o.params, o.clip);
    o.optimizer.step();
  }
}

/** Forward, cross-entropy, backward (gradients averaged over ranks), clipping and the optimizer step, run eagerly. */
export const eagerStep: StepFactory = ({ model, ddp, optimizer, scaler, clipGradNorm: clip, labelSmoothing, amp, device }) => {
  const params = model.parameters();
  const net = ddp ?? model;
  return (b, agree) => tidy(() => {
    const logits = ampForward((x) => net.forward(x), b.x, amp, device);
    const loss = F.crossEntropy(logits, b.y, { labelSmoothing });
    const value = agree(loss.item());
    if (!Number.isFinite(value)) return { loss: value, top1: 0, top5: 0 };
    optimizer.zeroGrad();
    (scaler ? loss.mul(scaler.scale) : loss).backward();
    applyGradients({ ddp, optimizer, scaler, clip, params });
    const [top1, top5] = topkCorrect(logits, b.y, 5);
    return { loss: value, top1, top5 };
  });
};
