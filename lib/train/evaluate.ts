// Evaluation: mean loss and top-1/top-5 accuracy over a loader in eval mode, summed over the ranks.
import { dispose, noGrad, tidy, type Device, type Tensor } from '../tensor.ts';
import { withAmp, type Amp } from '../device.ts';
import * as F from '../nn/functional.ts';
import type { Module } from '../nn/module.ts';
import type { DataLoader } from '../data/loader.ts';
import { overRanks } from './ranks.ts';

/** Correct top-1 and top-k predictions in a batch. */
export function topkCorrect(logits: Tensor, y: Tensor, k: number): [number, number] {
  return tidy(() => {
    const hit = logits.topk(Math.min(k, logits.shape[1]!), 1).indices.eq(y.unsqueeze(1)).to('float32');
    return [hit.select(1, 0).sum().item(), hit.sum().item()];
  });
}

/** Logits of a batch under the run's mixed precision, as float32 for the loss. */
export function ampForward(forward: (x: Tensor) => Tensor, x: Tensor, amp: Amp | undefined, device: Device): Tensor {
  const out = withAmp(amp, device, () => forward(x));
  return amp ? out.to('float32') : out;
}

/** How evaluate() runs: mixed precision, device, loss smoothing, and the forward to score (the model's by default). */
export interface EvaluateOptions {
  amp?: Amp;
  device?: Device;
  labelSmoothing?: number;
  /** Logits of a batch, e.g. of averaged weights or with test-time augmentation; the model is in eval mode meanwhile. */
  forward?: (x: Tensor) => Tensor;
}

/** Mean loss and top-1/top-5 accuracy (fractions) of a model over a loader, in eval mode. */
export async function evaluate(model: Module, loader: DataLoader, { amp, device = 'cpu', labelSmoothing = 0, forward = (x) => model.forward(x) }: EvaluateOptions = {}): Promise<{ loss: number; top1: number; top5: number; images: number }> {
  const wasTraining = model.training;
  model.eval();
  let loss = 0;
  let top1 = 0;
  let top5 = 0;
  let n = 0;
  try {
    for await (const b of loader.epoch(0)) {
      noGrad(() => tidy(() => {
        const logits = ampForward(forward, b.x, amp, device);
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
  [loss, top1, top5, n] = overRanks([loss, top1, top5, n]) as [number, number, number, number];
  return { loss: loss / n, top1: top1 / n, top5: top5 / n, images: n };
}
