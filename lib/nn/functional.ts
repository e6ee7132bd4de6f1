// F: torch.nn.functional's names in camelCase, over the native op table.
import { native } from '../native.ts';
import { cpuInfo } from '../cpu.ts';
import { Tensor, autocast, dtypeOf, tidy, type DType } from '../tensor.ts';

type Pair = number | readonly [number, number];
const pair = (v: Pair): readonly number[] => (typeof v === 'number' ? [v, v] : v);

/** 2-D convolution; groups > 1 gives the grouped (ResNeXt) form. */
export function conv2d(
  x: Tensor,
  weight: Tensor,
  bias?: Tensor | null,
  { stride = 1, padding = 0, dilation = 1, groups = 1 }: { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number } = {},
): Tensor {
  if (bf16Emulated(x, weight)) return conv2dBf16InFp32(x, weight, bias, [pair(stride), pair(padding), pair(dilation)], groups);
  // x?.h: a missing input reaches the op's own check ("argument 'input' must be a Tensor"), not a read of undefined.
  return new Tensor(native.conv2d(x?.h, weight?.h, bias?.h, pair(stride), pair(padding), pair(dilation), groups));
}

const BF16 = dtypeOf('bfloat16');

/**
 * Whether this convolution would be a bf16 one (CPU autocast to bf16, or bf16 operands) on a CPU where libtorch
 * has no oneDNN bf16 convolution (cpu.onednnBf16 false, e.g. AVX2 only), which makes libtorch fall back to an
 * im2col convolution about 10x slower than fp32's. `RESNET_TS_BF16_CONV_FP32=0` keeps libtorch's own
 * everywhere, `=1` uses this one on every CPU.
 */
function bf16Emulated(x: Tensor, weight: Tensor): boolean {
  if (!bf16ConvInFp32() || !(x instanceof Tensor) || x.device !== 'cpu') return false;
  const [on, dtype] = native.autocastState('cpu');
  return on ? dtype === BF16 : x.dtype === 'bfloat16' && weight.dtype === 'bfloat16';
}

/**
 * Whether CPU bf16 convolutions run in fp32 on bf16-rounded operands here: on CPUs where libtorch's oneDNN has no
 * bf16 convolution (cpu.onednnBf16 false), or everywhere with RESNET_TS_BF16_CONV_FP32=1 (never with =0).
 */
export function bf16ConvInFp32(): boolean {
  const env = process.env.RESNET_TS_BF16_CONV_FP32;
  if (env === '0' || env === '1') return env === '1';
  const cpu = cpuInfo();
  return cpu.flagsKnown && !cpu.onednnBf16;
}

/** t in float32 holding bf16 values: bf16 cast up (exact), float32 rounded to bf16 first; other dtypes as they are. */
export function bf16RoundedFp32(t: Tensor): Tensor {
  if (t.dtype === 'bfloat16') return t.to('float32');
  if (t.dtype !== 'float32') return t;
  const b = t.to('bfloat16');
  const f = b.to('float32');
  b.dispose();
  return f;
}

/**
 * A bf16 convolution with the same numbers as oneDNN's: the operands rounded to bf16 (their products are exact
 * in fp32), accumulated in fp32, the output rounded to bf16; run by libtorch's fp32 kernel with autocast off.
 * Differentiable: the casts round the gradients to bf16 where a bf16 backward kernel would.
 */
function conv2dBf16InFp32(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, [s, p, d]: (readonly number[])[], groups: number): Tensor {
  const r = bf16RoundedFp32;
  return tidy(() => autocast(() => new Tensor(native.conv2d(r(x).h, r(weight).h, bias ? r(bias).h : undefined, s!, p!, d!, groups)),
    { device: 'cpu', dtype: 'bfloat16', enabled: false }).to('bfloat16'));
}

/** Batch normalisation; in training it updates runningMean/runningVar in place (momentum as torch's). */
export function batchNorm(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  { weight, bias, training = false, momentum = 0.1, eps = 1e-5 }: { weight?: Tensor | null; bias?: Tensor | null; training?: boolean; momentum?: number; eps?: number } = {},
): Tensor {
  // As torch.nn.functional.batch_norm: one value per channel has no variance, and would put NaN into the running one.
  if (training && x instanceof Tensor && x.ndim >= 2 && x.numel / x.shape[1]! <= 1) {
    throw new RangeError(`batchNorm: expected more than 1 value per channel when training, got input of shape [${x.shape.join(', ')}]`);
  }
  return new Tensor(native.batchNorm(x?.h, weight?.h, bias?.h, runningMean?.h, runningVar?.h, training, momentum, eps));
}

/**
 * Training-mode batch normalisation with statistics over every rank's batch (torch's SyncBatchNorm):
 * differentiable, and updates the running statistics as batchNorm does. Needs an initialised
 * process group (lib/distributed).
 */
export function syncBatchNorm(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  { weight, bias, momentum = 0.1, eps = 1e-5 }: { weight?: Tensor | null; bias?: Tensor | null; momentum?: number; eps?: number } = {},
): Tensor {
  return new Tensor(native.distSyncBatchNorm(x.h, weight?.h, bias?.h, runningMean?.h, runningVar?.h, eps, momentum));
}

/** 2-D max pooling (stride defaults to the kernel size). */
export function maxPool2d(x: Tensor, kernelSize: Pair, { stride, padding = 0, dilation = 1, ceilMode = false }: { stride?: Pair; padding?: Pair; dilation?: Pair; ceilMode?: boolean } = {}): Tensor {
  return new Tensor(native.maxPool2d(x.h, pair(kernelSize), pair(stride ?? kernelSize), pair(padding), pair(dilation), ceilMode));
}

/** 2-D average pooling (stride defaults to the kernel size). */
export function avgPool2d(x: Tensor, kernelSize: Pair, { stride, padding = 0, ceilMode = false, countIncludePad = true }: { stride?: Pair; padding?: Pair; ceilMode?: boolean; countIncludePad?: boolean } = {}): Tensor {
  return new Tensor(native.avgPool2d(x.h, pair(kernelSize), pair(stride ?? kernelSize), pair(padding), ceilMode, countIncludePad));
}

/** Adaptive average pooling to outputSize. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: Pair): Tensor {
  return new Tensor(native.adaptiveAvgPool2d(x.h, pair(outputSize)));
}

/** y = x Wᵀ + b */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return new Tensor(native.linear(x?.h, weight?.h, bias?.h));
}

/** Zeroes elements with probability p in training, scaling the rest by 1/(1-p). */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  return new Tensor(native.dropout(x.h, p, training));
}

/** Constant padding; pad lists (left, right) pairs from the last dimension backwards, as torch's F.pad. */
export function pad(x: Tensor, padding: readonly number[], value = 0): Tensor {
  return new Tensor(native.constantPadNd(x.h, padding, value));
}

export function relu(x: Tensor): Tensor {
  return new Tensor(native.relu(x.h));
}

export function softmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return new Tensor(native.softmax(x.h, dim, dtypeOf(dtype)));
}

export function logSoftmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return new Tensor(native.logSoftmax(x.h, dim, dtypeOf(dtype)));
}

type Reduction = 'mean' | 'sum' | 'none';

/** Cross-entropy of logits against class indices (or probabilities), with label smoothing. */
export function crossEntropy(
  logits: Tensor,
  target: Tensor,
  { weight, reduction = 'mean', ignoreIndex = -100, labelSmoothing = 0 }: { weight?: Tensor | null; reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  return new Tensor(native.crossEntropy(logits.h, target.h, weight?.h, reduction, ignoreIndex, labelSmoothing));
}

/** Negative log-likelihood of log-probabilities. */
export function nllLoss(
  logProbs: Tensor,
  target: Tensor,
  { weight, reduction = 'mean', ignoreIndex = -100 }: { weight?: Tensor | null; reduction?: Reduction; ignoreIndex?: number } = {},
): Tensor {
  return new Tensor(native.nllLoss(logProbs.h, target.h, weight?.h, reduction, ignoreIndex));
}

/** Bilinear resize of an NCHW float tensor (align_corners=false); antialias as torchvision's resize. */
export function interpolateBilinear(x: Tensor, size: Pair, { antialias = true }: { antialias?: boolean } = {}): Tensor {
  return new Tensor(native.interpolateBilinear(x.h, pair(size), antialias));
}
