// inference.optimize(model): an eval-mode ResNet/ResNeXt (ImageNet or CIFAR family, post- or pre-activation)
// turned into a FusedNet: every BatchNorm folded into the convolution before it (in float64, then cast),
// channels-last activations, conv + bias + ReLU and conv + shortcut + ReLU as single oneDNN kernels with
// weights reordered once, optionally in bfloat16 (`amp: 'bf16'`). The source model is left untouched.
import { zeros } from '../creation.ts';
import { BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential } from '../nn/layers.ts';
import type { Module } from '../nn/module.ts';
import { BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, ZeroPadShortcut } from '../models/blocks.ts';
import { CifarResNet } from '../models/cifar.ts';
import { ResNet } from '../models/resnet.ts';
import { noGrad, tidy, type Tensor } from '../tensor.ts';
import {
  FusedNet, type AffineSpec, type ComputeDType, type ConvSpec, type NetSpec, type ShortcutSpec, type UnitSpec,
} from './fused.ts';

/** Options of optimize(). */
export interface OptimizeOptions {
  /**
   * Compute in bfloat16 ('bf16': oneDNN kernels on CPUs with AVX512-BF16 or AMX, see cpu.bf16Pays(); float32
   * logits out) or float16 ('fp16': CUDA). Default: float32, outputs equal to the model's to ~1e-5.
   */
  amp?: 'bf16' | 'fp16';
}

const AMP: Record<string, ComputeDType> = { bf16: 'bfloat16', fp16: 'float16' };

/** Folded tensors by the fused network's state-dict key, filled while the spec is built. */
type Sink = Record<string, Tensor>;

/** A model optimize() has no fused form for (the session then runs the model as it is). */
export class UnsupportedModelError extends Error {}

function unsupported(what: string): Error {
  return new UnsupportedModelError(`inference.optimize: ${what}; supported are the registry's ResNet/ResNeXt/Wide ResNet (ImageNet) and CIFAR models, post- or pre-activation`);
}

function childOrNull(m: Module, name: string): Module | null {
  return m.namedChildren().find(([n]) => n === name)?.[1] ?? null;
}

function need<T extends Module>(m: Module, name: string, cls: abstract new (...a: never[]) => T): T {
  const c = childOrNull(m, name);
  if (!(c instanceof cls)) throw unsupported(`${m.constructor.name}.${name} is ${c ? c.constructor.name : 'missing'}, not ${cls.name}`);
  return c;
}

/** The per-channel scale and shift of an eval BatchNorm, in float64: y = x * scale + shift. */
function bnAffine(bn: BatchNorm2d): { scale: Tensor; shift: Tensor } {
  const scale = bn.weight.to('float64').div(bn.runningVar.to('float64').add(bn.eps).sqrt());
  const shift = bn.bias.to('float64').sub(bn.runningMean.to('float64').mul(scale));
  return { scale, shift };
}

/** Folds bn (if any) into conv and records weight/bias under `key`; returns the conv's spec. */
function conv(conv: Conv2d, bn: BatchNorm2d | null, relu: boolean, dtype: ComputeDType, key: string, sink: Sink): ConvSpec {
  const [weight, bias] = tidy(() => {
    const w = conv.weight.to('float64');
    const b0 = conv.bias ? conv.bias.to('float64') : zeros([conv.outChannels], { dtype: 'float64', device: w.device });
    if (!bn) return [w.to(dtype), b0.to(dtype)];
    if (bn.numFeatures !== conv.outChannels) throw unsupported(`BatchNorm2d(${bn.numFeatures}) after a conv with ${conv.outChannels} outputs`);
    const { scale, shift } = bnAffine(bn);
    return [w.mul(scale.view(-1, 1, 1, 1)).to(dtype), b0.mul(scale).add(shift).to(dtype)];
  });
  sink[`${key}.weight`] = weight;
  sink[`${key}.bias`] = bias;
  return {
    inChannels: conv.inChannels, outChannels: conv.outChannels, kernelSize: [...conv.kernelSize], stride: [...conv.stride],
    padding: [...conv.padding], dilation: [...conv.dilation], groups: conv.groups, relu, dtype,
  };
}

function affine(bn: BatchNorm2d, relu: boolean, dtype: ComputeDType, key: string, sink: Sink): AffineSpec {
  const [scale, shift] = tidy(() => {
    const a = bnAffine(bn);
    return [a.scale.to(dtype), a.shift.to(dtype)];
  });
  sink[`${key}.scale`] = scale;
  sink[`${key}.shift`] = shift;
  return { channels: bn.numFeatures, relu, dtype };
}

/** A projection (Sequential of Conv2d [+ BatchNorm2d]), zero-pad option A, or the identity. */
function shortcut(block: Module, dtype: ComputeDType, key: string, sink: Sink): ShortcutSpec {
  const ds = childOrNull(block, 'downsample');
  if (!ds) return { kind: 'identity' };
  if (ds instanceof ZeroPadShortcut) return { kind: 'zeropad', inPlanes: ds.inPlanes, outPlanes: ds.outPlanes, stride: ds.stride };
  const parts = ds instanceof Sequential ? ds.namedChildren().map(([, m]) => m) : [];
  const [c, bn] = parts;
  if (!(c instanceof Conv2d) || parts.length > 2 || (bn !== undefined && !(bn instanceof BatchNorm2d))) {
    throw unsupported(`shortcut ${ds.constructor.name} is not Conv2d [+ BatchNorm2d] or ZeroPadShortcut`);
  }
  return { kind: 'projection', conv: conv(c, (bn as BatchNorm2d | undefined) ?? null, false, dtype, `${key}.downsample`, sink) };
}

function unit(block: Module, dtype: ComputeDType, key: string, sink: Sink): UnitSpec {
  const cv = (name: string) => need(block, name, Conv2d);
  const bn = (name: string) => need(block, name, BatchNorm2d);
  if (block instanceof BasicBlock || block instanceof Bottleneck) {
    const n = block instanceof Bottleneck ? 3 : 2;
    const body = Array.from({ length: n - 1 }, (_, i) => conv(cv(`conv${i + 1}`), bn(`bn${i + 1}`), true, dtype, `${key}.conv${i + 1}`, sink));
    const residual = block.residual;
    const last = conv(cv(`conv${n}`), bn(`bn${n}`), !residual, dtype, `${key}.conv${n}`, sink);
    return { pre: null, body, last, shortcut: residual ? shortcut(block, dtype, key, sink) : null, shortcutFromPre: false, relu: true };
  }
  if (block instanceof PreActBasicBlock || block instanceof PreActBottleneck) {
    const n = block instanceof PreActBottleneck ? 3 : 2;
    const pre = affine(bn('bn1'), true, dtype, `${key}.pre`, sink);
    const body = Array.from({ length: n - 1 }, (_, i) => conv(cv(`conv${i + 1}`), bn(`bn${i + 2}`), true, dtype, `${key}.conv${i + 1}`, sink));
    const last = conv(cv(`conv${n}`), null, false, dtype, `${key}.conv${n}`, sink);
    return { pre, body, last, shortcut: shortcut(block, dtype, key, sink), shortcutFromPre: true, relu: false };
  }
  throw unsupported(`block ${block.constructor.name}`);
}

function stages(model: Module, count: number, dtype: ComputeDType, sink: Sink): UnitSpec[][] {
  return Array.from({ length: count }, (_, i) => {
    const layer = need(model, `layer${i + 1}`, Sequential);
    return layer.namedChildren().map(([n, b]) => unit(b, dtype, `layer${i + 1}.${n}`, sink));
  });
}

function head(model: Module, sink: Sink): NetSpec['fc'] {
  const fc = need(model, 'fc', Linear);
  sink['fc.weight'] = fc.weight.to('float32');
  if (fc.bias) sink['fc.bias'] = fc.bias.to('float32');
  return { inFeatures: fc.inFeatures, outFeatures: fc.outFeatures, bias: fc.bias !== null };
}

/** The fused network's spec and folded state for a supported model. */
function describe(model: Module, dtype: ComputeDType, sink: Sink): NetSpec {
  if (model instanceof ResNet) {
    need(model, 'relu', ReLU);
    const mp = need(model, 'maxpool', MaxPool2d);
    const num = (v: unknown, d: number): number => (typeof v === 'number' ? v : Array.isArray(v) && v[0] === v[1] ? (v[0] as number) : d);
    return {
      dtype,
      stem: conv(need(model, 'conv1', Conv2d), need(model, 'bn1', BatchNorm2d), true, dtype, 'stem', sink),
      maxpool: { kernelSize: num(mp.kernelSize, 3), stride: num(mp.options.stride ?? mp.kernelSize, 2), padding: num(mp.options.padding ?? 0, 0) },
      stages: stages(model, 4, dtype, sink),
      post: null,
      fc: head(model, sink),
    };
  }
  if (model instanceof CifarResNet) {
    const bn1 = childOrNull(model, 'bn1');
    const finalBn = childOrNull(model, 'final_bn');
    return {
      dtype,
      stem: conv(need(model, 'conv1', Conv2d), bn1 instanceof BatchNorm2d ? bn1 : null, bn1 !== null, dtype, 'stem', sink),
      maxpool: null,
      stages: stages(model, 3, dtype, sink),
      post: finalBn instanceof BatchNorm2d ? affine(finalBn, true, dtype, 'post', sink) : null,
      fc: head(model, sink),
    };
  }
  throw unsupported(`model ${model.constructor.name}`);
}

/**
 * An inference-only copy of an eval-mode model with BatchNorm folded, channels-last activations and fused
 * oneDNN kernels (see FusedNet); on the model's device. forward(x) takes [N, C, H, W] images, returns float32
 * logits. Dispose it when done (its reordered weights are freed with it).
 */
export function optimize(model: Module, { amp }: OptimizeOptions = {}): FusedNet {
  if (model.training) throw new Error('inference.optimize: the model is in training mode; call model.eval() first (BatchNorm is folded with its running statistics)');
  if (amp !== undefined && !(amp in AMP)) throw new TypeError(`inference.optimize: amp must be 'bf16' or 'fp16'; got ${String(amp)}`);
  const dtype: ComputeDType = amp ? AMP[amp]! : 'float32';
  const device = model.parameters()[0]?.device ?? 'cpu';
  const sink: Sink = {};
  try {
    const spec = noGrad(() => describe(model, dtype, sink));
    const net = new FusedNet(spec);
    if (device !== 'cpu') net.to(device);
    net.loadStateDict(sink);
    return net;
  } finally {
    for (const t of Object.values(sink)) t.dispose();
  }
}
