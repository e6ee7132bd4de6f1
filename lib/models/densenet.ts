// DenseNet (Huang et al. 2017), torchvision-exact (names, options, state-dict keys): every dense layer reads the
// concatenation of all earlier feature maps of its block. densenet121/161/169/201 and the class the CIFAR family reuses.
import { cat } from '../creation.ts';
import * as F from '../nn/functional.ts';
import { AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, chain } from '../nn/layers.ts';
import { constant_, kaimingNormal_ } from '../nn/init.ts';
import { Module, type LoadResult } from '../nn/module.ts';
import { tidy, type Tensor } from '../tensor.ts';
import { checkPositiveInts } from './blocks.ts';

/** Options torchvision's densenet builders accept (camelCased), plus the input channels. */
export interface DenseNetOptions {
  numClasses?: number;
  /** Bottleneck width as a multiple of the growth rate (the 1x1 conv outputs bnSize * k channels). */
  bnSize?: number;
  /** Dropout after each dense layer's 3x3 conv (torchvision's placement). */
  dropRate?: number;
  inChannels?: number;
}

/** Everything torchvision's DenseNet class takes, plus the stem: ImageNet's 7x7/2 + max-pool, or CIFAR's single 3x3. */
export interface DenseNetConfig extends DenseNetOptions {
  /** k of the paper: channels each dense layer adds. */
  growthRate: number;
  /** Dense layers per block; a transition (BN-ReLU-1x1-avgpool, compression 0.5) follows all but the last. */
  blockConfig: readonly number[];
  /** Channels of the first convolution. */
  numInitFeatures: number;
  stem?: 'imagenet' | 'cifar';
}

/** Children run in order under the given names (torch's Sequential over an OrderedDict). */
class NamedSequential extends Module {
  constructor(layers: [string, Module][]) {
    super();
    for (const [name, m] of layers) this.registerModule(name, m);
  }

  forward(x: Tensor): Tensor {
    return chain(x, ...this.namedChildren().map(([, m]) => m));
  }
}

/** BN-ReLU-1x1 (bnSize * k channels) then BN-ReLU-3x3 (k channels): the paper's bottleneck layer "DenseNet-B". */
export class DenseLayer extends Module {
  readonly norm1: BatchNorm2d;
  readonly relu1: ReLU;
  readonly conv1: Conv2d;
  readonly norm2: BatchNorm2d;
  readonly relu2: ReLU;
  readonly conv2: Conv2d;

  constructor(numInputFeatures: number, growthRate: number, bnSize: number, readonly dropRate: number) {
    super();
    this.norm1 = this.registerModule('norm1', new BatchNorm2d(numInputFeatures));
    this.relu1 = this.registerModule('relu1', new ReLU(true));
    this.conv1 = this.registerModule('conv1', new Conv2d(numInputFeatures, bnSize * growthRate, 1, { bias: false }));
    this.norm2 = this.registerModule('norm2', new BatchNorm2d(bnSize * growthRate));
    this.relu2 = this.registerModule('relu2', new ReLU(true));
    this.conv2 = this.registerModule('conv2', new Conv2d(bnSize * growthRate, growthRate, 3, { padding: 1, bias: false }));
  }

  /** x is the concatenation of the block input and every earlier layer's output. */
  forward(x: Tensor): Tensor {
    const out = chain(x, this.norm1, this.relu1, this.conv1, this.norm2, this.relu2, this.conv2);
    if (this.dropRate <= 0) return out;
    const dropped = F.dropout(out, this.dropRate, this.training);
    out.dispose();
    return dropped;
  }
}

/** numLayers dense layers (`denselayer1`..); the output concatenates the input and all k-channel outputs. */
export class DenseBlock extends Module {
  constructor(numLayers: number, numInputFeatures: number, bnSize: number, growthRate: number, dropRate: number) {
    super();
    for (let i = 0; i < numLayers; i++) {
      this.registerModule(`denselayer${i + 1}`, new DenseLayer(numInputFeatures + i * growthRate, growthRate, bnSize, dropRate));
    }
  }

  forward(x: Tensor): Tensor {
    // Each layer's input is a fresh concatenation (torchvision's non-checkpointed path); tidy frees them all.
    return tidy(() => {
      const features = [x];
      for (const [, layer] of this.namedChildren()) features.push(layer.forward(features.length === 1 ? x : cat(features, 1)));
      return cat(features, 1);
    });
  }
}

/** BN-ReLU-1x1 conv-2x2 average pool between blocks (keys norm, relu, conv, pool as torchvision's _Transition). */
export class Transition extends NamedSequential {
  constructor(numInputFeatures: number, numOutputFeatures: number) {
    super([
      ['norm', new BatchNorm2d(numInputFeatures)],
      ['relu', new ReLU(true)],
      ['conv', new Conv2d(numInputFeatures, numOutputFeatures, 1, { bias: false })],
      ['pool', new AvgPool2d(2, { stride: 2 })],
    ]);
  }
}

// torchvision's _load_state_dict: checkpoints from before module names lost their dots say `norm.1`, `conv.2`.
const LEGACY_KEY = /^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$/;

/** A state dict with torchvision's old dense-layer keys (`…denselayer1.norm.1.weight`) renamed to today's (`…norm1.weight`). */
export function remapLegacyKeys(sd: Record<string, Tensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(sd)) {
    const m = LEGACY_KEY.exec(k);
    out[m ? m[1]! + m[2]! : k] = v;
  }
  return out;
}

/**
 * torchvision's DenseNet-BC: stem, dense blocks joined by halving transitions, a final BN (`features.norm5`),
 * ReLU, global average pool and `classifier`.
 */
export class DenseNet extends Module {
  readonly features: Module;
  readonly classifier: Linear;

  constructor(cfg: DenseNetConfig) {
    super();
    const { growthRate, blockConfig, numInitFeatures, bnSize = 4, dropRate = 0, numClasses = 1000, inChannels = 3, stem = 'imagenet' } = cfg;
    checkPositiveInts('DenseNet', { growthRate, numInitFeatures, bnSize, numClasses, inChannels });
    if (!blockConfig.length || blockConfig.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new Error(`DenseNet: blockConfig must list positive layer counts; got [${blockConfig.join(', ')}]`);
    }
    if (!(dropRate >= 0 && dropRate < 1)) throw new Error(`DenseNet: dropRate must be in [0, 1); got ${dropRate}`);
    const layers: [string, Module][] = stem === 'imagenet'
      ? [
        ['conv0', new Conv2d(inChannels, numInitFeatures, 7, { stride: 2, padding: 3, bias: false })],
        ['norm0', new BatchNorm2d(numInitFeatures)],
        ['relu0', new ReLU(true)],
        ['pool0', new MaxPool2d(3, { stride: 2, padding: 1 })],
      ]
      // The paper's CIFAR nets: one 3x3 conv; every dense layer starts with its own BN-ReLU.
      : [['conv0', new Conv2d(inChannels, numInitFeatures, 3, { padding: 1, bias: false })]];
    let features = numInitFeatures;
    blockConfig.forEach((n, i) => {
      layers.push([`denseblock${i + 1}`, new DenseBlock(n, features, bnSize, growthRate, dropRate)]);
      features += n * growthRate;
      if (i === blockConfig.length - 1) return;
      layers.push([`transition${i + 1}`, new Transition(features, Math.floor(features / 2))]);
      features = Math.floor(features / 2);
    });
    // torchvision names the final BN norm5 whatever the number of blocks.
    layers.push(['norm5', new BatchNorm2d(features)]);
    this.features = this.registerModule('features', new NamedSequential(layers));
    this.classifier = this.registerModule('classifier', new Linear(features, numClasses));
    initDenseNet(this);
  }

  forward(x: Tensor): Tensor {
    const features = this.features.forward(x).relu_();
    const pooled = F.adaptiveAvgPool2d(features, 1);
    features.dispose();
    const flat = pooled.flatten(1);
    pooled.dispose();
    const y = this.classifier.forward(flat);
    flat.dispose();
    return y;
  }

  /** As Module.loadStateDict, also accepting torchvision's legacy `norm.1`-style keys (the original ImageNet .pth files). */
  override loadStateDict(sd: Record<string, Tensor>, options?: Parameters<Module['loadStateDict']>[1]): LoadResult {
    if (!sd || typeof sd !== 'object') return super.loadStateDict(sd, options);
    return super.loadStateDict(remapLegacyKeys(sd), options);
  }
}

/** torchvision's "official init from torch repo": convs kaiming-normal (fan_in), BN 1 and 0, Linear bias 0. */
function initDenseNet(model: Module): void {
  for (const m of model.modules()) {
    if (m instanceof Conv2d) kaimingNormal_(m.weight);
    else if (m instanceof Linear && m.bias) constant_(m.bias, 0);
  }
}

/** One row of the ImageNet DenseNet table (torchvision's builder arguments). */
export interface DenseNetSpec {
  growthRate: number;
  blockConfig: readonly [number, number, number, number];
  numInitFeatures: number;
}

/** The ImageNet DenseNet table: torchvision's builders as rows. */
export const DENSENET: Record<string, DenseNetSpec> = {
  densenet121: { growthRate: 32, blockConfig: [6, 12, 24, 16], numInitFeatures: 64 },
  densenet161: { growthRate: 48, blockConfig: [6, 12, 36, 24], numInitFeatures: 96 },
  densenet169: { growthRate: 32, blockConfig: [6, 12, 32, 32], numInitFeatures: 64 },
  densenet201: { growthRate: 32, blockConfig: [6, 12, 48, 32], numInitFeatures: 64 },
};

/** Builds a row of the table. */
export function buildDenseNet(name: string, opts: DenseNetOptions = {}): DenseNet {
  const spec = DENSENET[name];
  if (!spec) throw new Error(`unknown DenseNet '${name}'`);
  return new DenseNet({ ...opts, ...spec, stem: 'imagenet' });
}

/** DenseNet-121 (Huang et al. 2017; k = 32, 7.98 M parameters). */
export const densenet121 = (opts?: DenseNetOptions): DenseNet => buildDenseNet('densenet121', opts);
/** DenseNet-161 (k = 48, 96 stem channels; 28.7 M). */
export const densenet161 = (opts?: DenseNetOptions): DenseNet => buildDenseNet('densenet161', opts);
/** DenseNet-169 (k = 32; 14.1 M). */
export const densenet169 = (opts?: DenseNetOptions): DenseNet => buildDenseNet('densenet169', opts);
/** DenseNet-201 (k = 32; 20.0 M). */
export const densenet201 = (opts?: DenseNetOptions): DenseNet => buildDenseNet('densenet201', opts);
