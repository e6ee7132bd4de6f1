// The layers a ResNet is made of, as torch.nn's: Conv2d, BatchNorm2d (and SyncBatchNorm), Linear, ReLU, pooling, Flatten, Identity, Sequential.
import { empty, ones, zeros } from '../creation.ts';
import { native } from '../native.ts';
import type { Tensor } from '../tensor.ts';
import * as F from './functional.ts';
import { constant_, torchDefault_ } from './init.ts';
import { Module } from './module.ts';

type Pair = number | readonly [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

function positiveInt(v: number, what: string, layer: string): number {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${layer}: ${what} must be a positive integer; got ${v}`);
  return v;
}

/** Options of Conv2d, as torch.nn.Conv2d's. */
export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

/** 2-D convolution; weight [out, in/groups, kh, kw], torch's default init (models re-initialise). */
export class Conv2d extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(inChannels: number, outChannels: number, kernelSize: Pair, { stride = 1, padding = 0, dilation = 1, groups = 1, bias = true }: Conv2dOptions = {}) {
    super();
    this.inChannels = positiveInt(inChannels, 'inChannels', 'Conv2d');
    this.outChannels = positiveInt(outChannels, 'outChannels', 'Conv2d');
    this.groups = positiveInt(groups, 'groups', 'Conv2d');
    if (inChannels % groups || outChannels % groups) throw new Error(`Conv2d: channels ${inChannels}->${outChannels} are not divisible by groups=${groups}`);
    [this.kernelSize, this.stride, this.padding, this.dilation] = [pair(kernelSize), pair(stride), pair(padding), pair(dilation)];
    const w = this.registerParameter('weight', empty([outChannels, inChannels / groups, ...this.kernelSize]));
    const b = bias ? this.registerParameter('bias', empty([outChannels])) : null;
    torchDefault_(w, b);
  }

  get weight(): Tensor { return this.param('weight'); }
  get bias(): Tensor | null { return this.hasParam('bias') ? this.param('bias') : null; }

  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
  }

  protected override extraRepr(): string {
    const k = this.kernelSize;
    return `${this.inChannels}, ${this.outChannels}, kernel_size=(${k}), stride=(${this.stride})` +
      (this.padding.some(Boolean) ? `, padding=(${this.padding})` : '') +
      (this.dilation.some((d) => d !== 1) ? `, dilation=(${this.dilation})` : '') +
      (this.groups !== 1 ? `, groups=${this.groups}` : '') + (this.bias ? '' : ', bias=False');
  }
}

/** Options of BatchNorm2d and SyncBatchNorm, as torch's. */
export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
}

/** Batch normalisation over NCHW; training updates running_mean/var (momentum 0.1) and counts num_batches_tracked. */
export class BatchNorm2d extends Module {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number;

  /** shareWith: a BatchNorm2d whose parameters and buffers this one holds too (SyncBatchNorm.convert). */
  constructor(numFeatures: number, { eps = 1e-5, momentum = 0.1 }: BatchNormOptions = {}, shareWith?: BatchNorm2d) {
    super();
    this.numFeatures = positiveInt(numFeatures, 'numFeatures', 'BatchNorm2d');
    [this.eps, this.momentum] = [eps, momentum];
    if (shareWith !== undefined && !(shareWith instanceof BatchNorm2d && shareWith.numFeatures === numFeatures)) {
      throw new TypeError(`BatchNorm2d: shareWith must be a BatchNorm2d of ${numFeatures} features`);
    }
    const own = shareWith?.stateDict();
    for (const [name, make] of [['weight', () => ones([numFeatures])], ['bias', () => zeros([numFeatures])]] as const) {
      const shared = own?.[name];
      this.registerParameter(name, shared ?? make());
      if (shared && !shared.requiresGrad) shared.requiresGrad_(false); // registering turned it on
    }
    this.registerBuffer('running_mean', own?.running_mean ?? zeros([numFeatures]));
    this.registerBuffer('running_var', own?.running_var ?? ones([numFeatures]));
    this.registerBuffer('num_batches_tracked', own?.num_batches_tracked ?? zeros([], { dtype: 'int64' }));
  }

  get weight(): Tensor { return this.param('weight'); }
  get bias(): Tensor { return this.param('bias'); }
  get runningMean(): Tensor { return this.buffer('running_mean'); }
  get runningVar(): Tensor { return this.buffer('running_var'); }
  get numBatchesTracked(): Tensor { return this.buffer('num_batches_tracked'); }

  /** Resets the statistics to their initial values (mean 0, var 1, count 0). */
  resetRunningStats(): void {
    constant_(this.runningMean, 0);
    constant_(this.runningVar, 1);
    this.numBatchesTracked.zero_();
  }

  forward(x: Tensor): Tensor {
    this.startForward(x);
    return F.batchNorm(x, this.runningMean, this.runningVar, {
      weight: this.weight, bias: this.bias, training: this.training, momentum: this.momentum, eps: this.eps,
    });
  }

  /** What both forwards do first: check the input's shape and, in training, count the batch. */
  protected startForward(x: Tensor): void {
    if (x.ndim !== 4) throw new Error(`${this.constructor.name}: expected 4D input (N, C, H, W); got shape [${x.shape.join(', ')}]`);
    if (this.training) this.numBatchesTracked.add_(1);
  }

  // Files written before torch 0.4.1 have no num_batches_tracked; torch loads them too.
  protected override optionalKeys(): readonly string[] {
    return ['num_batches_tracked'];
  }

  protected override extraRepr(): string {
    return `${this.numFeatures}, eps=${this.eps}, momentum=${this.momentum}`;
  }
}

/**
 * torch.nn.SyncBatchNorm: in training, the batch statistics come from the whole global batch (every
 * rank of the process group) instead of this rank's part; in eval mode, or without a group of more
 * than one rank, it is a BatchNorm2d. Made by distributed.convertSyncBatchNorm; same state-dict keys.
 */
export class SyncBatchNorm extends BatchNorm2d {
  /** A SyncBatchNorm holding bn's own parameters and buffers (shared, not copied, as torch's convert_sync_batchnorm). */
  static convert(bn: BatchNorm2d): SyncBatchNorm {
    const sync = new SyncBatchNorm(bn.numFeatures, { eps: bn.eps, momentum: bn.momentum }, bn);
    sync.training = bn.training;
    return sync;
  }

  override forward(x: Tensor): Tensor {
    if (!this.training || !native.distIsInitialized() || native.distWorldSize() < 2) return super.forward(x);
    this.startForward(x);
    return F.syncBatchNorm(x, this.runningMean, this.runningVar, { weight: this.weight, bias: this.bias, momentum: this.momentum, eps: this.eps });
  }
}

/** y = x Wᵀ + b with torch's default init. */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(inFeatures: number, outFeatures: number, { bias = true }: { bias?: boolean } = {}) {
    super();
    this.inFeatures = positiveInt(inFeatures, 'inFeatures', 'Linear');
    this.outFeatures = positiveInt(outFeatures, 'outFeatures', 'Linear');
    const w = this.registerParameter('weight', empty([outFeatures, inFeatures]));
    const b = bias ? this.registerParameter('bias', empty([outFeatures])) : null;
    torchDefault_(w, b);
  }

  get weight(): Tensor { return this.param('weight'); }
  get bias(): Tensor | null { return this.hasParam('bias') ? this.param('bias') : null; }

  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }

  protected override extraRepr(): string {
    return `in_features=${this.inFeatures}, out_features=${this.outFeatures}, bias=${this.bias ? 'True' : 'False'}`;
  }
}

/** max(x, 0); inplace overwrites its input (as torchvision's ReLU(inplace=True)). */
export class ReLU extends Module {
  constructor(readonly inplace = false) {
    super();
  }

  forward(x: Tensor): Tensor {
    return this.inplace ? x.relu_() : x.relu();
  }
}

/** 2-D max pooling. */
export class MaxPool2d extends Module {
  constructor(readonly kernelSize: Pair, readonly options: { stride?: Pair; padding?: Pair; dilation?: Pair; ceilMode?: boolean } = {}) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, this.kernelSize, this.options);
  }
}

/** 2-D average pooling. */
export class AvgPool2d extends Module {
  constructor(readonly kernelSize: Pair, readonly options: { stride?: Pair; padding?: Pair; ceilMode?: boolean; countIncludePad?: boolean } = {}) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.avgPool2d(x, this.kernelSize, this.options);
  }
}

/** Average pooling to a fixed output size (1 gives global average pooling). */
export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** Flattens dimensions startDim..endDim into one. */
export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) {
    super();
  }

  forward(x: Tensor): Tensor {
    return x.flatten(this.startDim, this.endDim);
  }
}

/** Returns its input unchanged. */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** Runs its children in order; they are named '0', '1', ... as in torch. */
export class Sequential extends Module {
  constructor(...layers: Module[]) {
    super();
    layers.forEach((m, i) => this.registerModule(String(i), m));
  }

  /** The i-th layer. */
  at<M extends Module = Module>(i: number): M {
    return this.child<M>(String(i));
  }

  get length(): number {
    return this.namedChildren().length;
  }

  forward(x: Tensor): Tensor {
    return chain(x, ...this.namedChildren().map(([, m]) => m));
  }
}

/**
 * Applies layers in turn, disposing each intermediate handle at once (autograd holds its own references to
 * what backward needs), so a forward pass outside tidy() leaves only its output behind.
 */
export function chain(x: Tensor, ...layers: Module[]): Tensor {
  let y = x;
  for (const m of layers) {
    const next = m.forward(y);
    if (y !== x && next !== y) y.dispose();
    y = next;
  }
  return y;
}
