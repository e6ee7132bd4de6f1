// Test-time augmentation by horizontal flip: the model sees each image and its mirror, and the two predictions are
// averaged — as logits (airbench's TTA) or as probabilities (timm-style ensembling), returned as log-probabilities.
import { arange } from '../creation.ts';
import * as F from '../nn/functional.ts';
import { Module } from '../nn/module.ts';
import { tidy, type Tensor } from '../tensor.ts';

/** How the two predictions are combined. */
export type TtaMode = 'logits' | 'probs';

/** Options of ttaForward and FlipTTA. */
export interface TtaOptions {
  /** 'logits' (default): (f(x) + f(flip x)) / 2; 'probs': log((softmax f(x) + softmax f(flip x)) / 2). */
  mode?: TtaMode;
}

/**
 * The model's output averaged over x and x mirrored left-right (NCHW, last dimension flipped). In 'probs' mode the
 * mean probabilities come back as their logarithm, so argmax, softmax and cross-entropy downstream read them as logits.
 */
export function ttaForward(model: Module, x: Tensor, { mode = 'logits' }: TtaOptions = {}): Tensor {
  if (mode !== 'logits' && mode !== 'probs') throw new Error(`ttaForward: mode must be 'logits' or 'probs'; got ${String(mode)}`);
  if (x.ndim !== 4) throw new Error(`ttaForward: expected an NCHW batch; got shape [${x.shape.join(', ')}]`);
  return tidy(() => {
    const w = x.shape[3]!;
    const flipped = x.indexSelect(3, arange(w - 1, -1, -1, { device: x.device }));
    const a = model.forward(x);
    const b = model.forward(flipped);
    if (mode === 'logits') return a.add(b).div(2);
    // logsumexp of the two log-softmaxes minus log 2: the log of the mean probability, without underflow.
    const la = F.logSoftmax(a, 1, 'float32');
    const lb = F.logSoftmax(b, 1, 'float32');
    const hi = la.maximum(lb);
    return la.sub(hi).exp().add(lb.sub(hi).exp()).log().add(hi).sub(Math.LN2);
  });
}

/** A model wrapped so that forward() is ttaForward(): pass it to evaluate() to score with flip TTA. */
export class FlipTTA extends Module {
  readonly module: Module;
  readonly mode: TtaMode;

  constructor(model: Module, { mode = 'logits' }: TtaOptions = {}) {
    super();
    if (mode !== 'logits' && mode !== 'probs') throw new Error(`FlipTTA: mode must be 'logits' or 'probs'; got ${String(mode)}`);
    this.module = this.registerModule('module', model);
    this.mode = mode;
    // Start in the model's mode, so that evaluate() restoring the wrapper's mode leaves the model as it was.
    this.train(model.training);
  }

  forward(x: Tensor): Tensor {
    return ttaForward(this.module, x, { mode: this.mode });
  }
}
