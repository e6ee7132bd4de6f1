// The ImageNet family, torchvision-exact (names, options, state-dict keys): ResNet, ResNeXt and Wide ResNet.
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential, chain } from '../nn/layers.ts';
import { kaimingNormal_, constant_ } from '../nn/init.ts';
import { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor.ts';
import { BasicBlock, Bottleneck, checkPositiveInts, projection } from './blocks.ts';

/** torchvision's ResNet arguments, camelCased, plus the stride-on-1x1 variant and the input channels. */
export interface ResNetOptions {
  numClasses?: number;
  /** Zero the last BN of each block so every residual branch starts at 0 (Goyal et al. 2017). */
  zeroInitResidual?: boolean;
  groups?: number;
  widthPerGroup?: number;
  /** For layer2..layer4: replace the stride-2 by dilation (segmentation backbones). */
  replaceStrideWithDilation?: readonly [boolean, boolean, boolean];
  /** Original ResNet ("v1"): stride on the bottleneck's first 1x1 instead of its 3x3. */
  strideOn1x1?: boolean;
  inChannels?: number;
}

/** One row of the model table. */
export interface ResNetSpec {
  block: typeof BasicBlock | typeof Bottleneck;
  layers: readonly [number, number, number, number];
  groups?: number;
  widthPerGroup?: number;
}

/** torchvision's ResNet: 7x7 stem, max-pool, four stages (64..512 planes), global average pool, fc. */
export class ResNet extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  relu: ReLU;
  maxpool: MaxPool2d;
  layer1: Sequential;
  layer2: Sequential;
  layer3: Sequential;
  layer4: Sequential;
  avgpool: AdaptiveAvgPool2d;
  fc: Linear;
  private inplanes = 64;
  private dilation = 1;

  constructor(spec: ResNetSpec, opts: ResNetOptions = {}) {
    super();
    const { numClasses = 1000, zeroInitResidual = false, inChannels = 3, strideOn1x1 = false } = opts;
    checkPositiveInts('ResNet', { numClasses, inChannels });
    const groups = opts.groups ?? 1;
    const baseWidth = opts.widthPerGroup ?? 64;
    const dilate = opts.replaceStrideWithDilation ?? [false, false, false];
    if (dilate.length !== 3) throw new Error(`replaceStrideWithDilation should be null or a 3-element tuple, got ${JSON.stringify(dilate)}`);
    const { block, layers } = spec;
    this.conv1 = this.registerModule('conv1', new Conv2d(inChannels, 64, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(64));
    this.relu = this.registerModule('relu', new ReLU(true));
    this.maxpool = this.registerModule('maxpool', new MaxPool2d(3, { stride: 2, padding: 1 }));
    const stage = (planes: number, blocks: number, stride: number, dil: boolean): Sequential => {
      const previousDilation = this.dilation;
      if (dil) [this.dilation, stride] = [this.dilation * stride, 1];
      const out = planes * block.expansion;
      const downsample = stride !== 1 || this.inplanes !== out ? projection(this.inplanes, out, stride) : null;
      const common = { groups, baseWidth, strideOn1x1 };
      const list = [new block(this.inplanes, planes, { ...common, stride, downsample, dilation: previousDilation })];
      this.inplanes = out;
      for (let i = 1; i < blocks; i++) list.push(new block(this.inplanes, planes, { ...common, dilation: this.dilation }));
      return new Sequential(...list);
    };
    this.layer1 = this.registerModule('layer1', stage(64, layers[0], 1, false));
    this.layer2 = this.registerModule('layer2', stage(128, layers[1], 2, dilate[0]));
    this.layer3 = this.registerModule('layer3', stage(256, layers[2], 2, dilate[1]));
    this.layer4 = this.registerModule('layer4', stage(512, layers[3], 2, dilate[2]));
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new Linear(512 * block.expansion, numClasses));
    initResNet(this, zeroInitResidual);
  }

  forward(x: Tensor): Tensor {
    const pooled = chain(x, this.conv1, this.bn1, this.relu, this.maxpool, this.layer1, this.layer2, this.layer3, this.layer4, this.avgpool);
    const flat = pooled.flatten(1);
    pooled.dispose();
    const y = this.fc.forward(flat);
    flat.dispose();
    return y;
  }
}

/** torchvision's init: convs kaiming-normal (fan_out, ReLU), BN weight 1 and bias 0 (BatchNorm2d's own), Linear left at torch's default. */
export function initResNet(model: Module, zeroInitResidual: boolean): void {
  for (const m of model.modules()) {
    if (m instanceof Conv2d) kaimingNormal_(m.weight, { mode: 'fanOut' });
  }
  if (zeroInitResidual) for (const m of model.modules()) if (m instanceof Bottleneck || m instanceof BasicBlock) constant_(m.lastBn.weight, 0);
}

/** The ImageNet model table: torchvision's builders as rows. */
export const IMAGENET: Record<string, ResNetSpec> = {
  resnet18: { block: BasicBlock, layers: [2, 2, 2, 2] },
  resnet34: { block: BasicBlock, layers: [3, 4, 6, 3] },
  resnet50: { block: Bottleneck, layers: [3, 4, 6, 3] },
  resnet101: { block: Bottleneck, layers: [3, 4, 23, 3] },
  resnet152: { block: Bottleneck, layers: [3, 8, 36, 3] },
  resnext50_32x4d: { block: Bottleneck, layers: [3, 4, 6, 3], groups: 32, widthPerGroup: 4 },
  resnext101_32x8d: { block: Bottleneck, layers: [3, 4, 23, 3], groups: 32, widthPerGroup: 8 },
  resnext101_64x4d: { block: Bottleneck, layers: [3, 4, 23, 3], groups: 64, widthPerGroup: 4 },
  wide_resnet50_2: { block: Bottleneck, layers: [3, 4, 6, 3], widthPerGroup: 128 },
  wide_resnet101_2: { block: Bottleneck, layers: [3, 4, 23, 3], widthPerGroup: 128 },
};

/** Builds a row of the table; a row's fixed groups/widthPerGroup may not be overridden (torchvision raises too). */
export function buildResNet(name: string, opts: ResNetOptions = {}): ResNet {
  const spec = IMAGENET[name];
  if (!spec) throw new Error(`unknown ImageNet model '${name}'`);
  for (const k of ['groups', 'widthPerGroup'] as const) {
    if (spec[k] !== undefined && opts[k] !== undefined && opts[k] !== spec[k]) {
      throw new Error(`${name}: ${k} is fixed to ${spec[k]} by the architecture; got ${opts[k]}`);
    }
  }
  return new ResNet(spec, { ...opts, groups: spec.groups ?? opts.groups, widthPerGroup: spec.widthPerGroup ?? opts.widthPerGroup });
}

/** ResNet-18 (He et al. 2015). */
export const resnet18 = (opts?: ResNetOptions): ResNet => buildResNet('resnet18', opts);
/** ResNet-34 (He et al. 2015). */
export const resnet34 = (opts?: ResNetOptions): ResNet => buildResNet('resnet34', opts);
/** ResNet-50 (He et al. 2015; stride on the 3x3 as torchvision). */
export const resnet50 = (opts?: ResNetOptions): ResNet => buildResNet('resnet50', opts);
/** ResNet-101 (He et al. 2015). */
export const resnet101 = (opts?: ResNetOptions): ResNet => buildResNet('resnet101', opts);
/** ResNet-152 (He et al. 2015). */
export const resnet152 = (opts?: ResNetOptions): ResNet => buildResNet('resnet152', opts);
/** ResNeXt-50 32x4d (Xie et al. 2017). */
export const resnext50_32x4d = (opts?: ResNetOptions): ResNet => buildResNet('resnext50_32x4d', opts);
/** ResNeXt-101 32x8d (Xie et al. 2017). */
export const resnext101_32x8d = (opts?: ResNetOptions): ResNet => buildResNet('resnext101_32x8d', opts);
/** ResNeXt-101 64x4d (Xie et al. 2017). */
export const resnext101_64x4d = (opts?: ResNetOptions): ResNet => buildResNet('resnext101_64x4d', opts);
/** Wide ResNet-50-2 (Zagoruyko & Komodakis 2016): bottleneck 3x3 twice as wide. */
export const wide_resnet50_2 = (opts?: ResNetOptions): ResNet => buildResNet('wide_resnet50_2', opts);
/** Wide ResNet-101-2 (Zagoruyko & Komodakis 2016). */
export const wide_resnet101_2 = (opts?: ResNetOptions): ResNet => buildResNet('wide_resnet101_2', opts);
