// Weight initialisers with torch.nn.init's formulas; each fills a tensor in place without recording gradients.
import { noGrad, type Tensor } from '../tensor.ts';

/** fan_in and fan_out of a weight as torch computes them (the receptive field multiplies both; groups are ignored). */
export function fans(t: Tensor): { fanIn: number; fanOut: number } {
  const s = t.shape;
  if (s.length < 2) throw new Error(`fans: need a tensor with at least 2 dimensions; got shape [${s.join(', ')}]`);
  const field = s.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: s[1]! * field, fanOut: s[0]! * field };
}

/** He et al. 2015 normal init: std = gain / sqrt(fan), gain = sqrt(2) for ReLU (torch's kaiming_normal_). */
export function kaimingNormal_(t: Tensor, { mode = 'fanIn', a = 0 }: { mode?: 'fanIn' | 'fanOut'; a?: number } = {}): Tensor {
  const f = fans(t);
  const std = Math.sqrt(2 / (1 + a * a)) / Math.sqrt(mode === 'fanIn' ? f.fanIn : f.fanOut);
  return noGrad(() => t.normal_(0, std));
}

/** He uniform init: bound = gain * sqrt(3 / fan) (torch's kaiming_uniform_, leaky_relu gain with slope a). */
export function kaimingUniform_(t: Tensor, { mode = 'fanIn', a = 0 }: { mode?: 'fanIn' | 'fanOut'; a?: number } = {}): Tensor {
  const f = fans(t);
  const bound = Math.sqrt(2 / (1 + a * a)) * Math.sqrt(3 / (mode === 'fanIn' ? f.fanIn : f.fanOut));
  return noGrad(() => t.uniform_(-bound, bound));
}

/** Uniform samples in [from, to). */
export function uniform_(t: Tensor, from: number, to: number): Tensor {
  return noGrad(() => t.uniform_(from, to));
}

/** Fills with a constant. */
export function constant_(t: Tensor, value: number): Tensor {
  return noGrad(() => t.fill_(value));
}

/** torch's default for Linear and Conv: weight kaiming-uniform with a = sqrt(5), bias uniform in ±1/sqrt(fan_in). */
export function torchDefault_(weight: Tensor, bias?: Tensor | null): void {
  kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias) {
    const bound = 1 / Math.sqrt(fans(weight).fanIn);
    uniform_(bias, -bound, bound);
  }
}
