// Random erasing (Zhong et al. 2017) with torchvision.transforms.RandomErasing's semantics, drawn per image of an
// NCHW batch from the loader's Rng: with probability p, a box of a random area fraction and aspect ratio is
// overwritten by a constant, one value per channel, or standard-normal noise. Apply it after normalize(), as
// torchvision's docs do, so that 0 is the mean pixel.
import { tensor } from '../creation.ts';
import { Tensor, noGrad, tidy } from '../tensor.ts';
import type { Rng } from './rng.ts';
import type { Transform } from './transforms.ts';

/** torchvision's RandomErasing arguments. */
export interface RandomErasingOptions {
  /** Probability that an image gets a box (0.5). */
  p?: number;
  /** Range of the box's area as a fraction of the image ([0.02, 0.33]). */
  scale?: readonly [number, number];
  /** Range of the box's height / width ([0.3, 3.3]), drawn log-uniformly. */
  ratio?: readonly [number, number];
  /** The fill: a number (0), one number per channel, or 'random' for N(0, 1) noise per pixel. */
  value?: number | readonly number[] | 'random';
}

/** One image's box (torchvision's get_params (i, j, h, w, v)): value holds 1, C or C*h*w numbers. */
export interface ErasingBox {
  top: number;
  left: number;
  height: number;
  width: number;
  value: Float32Array;
}

type Checked = { p: number; scale: readonly [number, number]; ratio: readonly [number, number]; value: number | readonly number[] | 'random' };

function check(o: RandomErasingOptions): Checked {
  const { p = 0.5, scale = [0.02, 0.33], ratio = [0.3, 3.3], value = 0 } = o;
  if (!(p >= 0 && p <= 1)) throw new Error(`randomErasing: p must be in [0, 1]; got ${p}`);
  if (!Array.isArray(scale) || scale.length !== 2 || !(scale[0] >= 0 && scale[0] <= scale[1] && scale[1] <= 1)) {
    throw new Error(`randomErasing: scale must be [min, max] within [0, 1]; got ${JSON.stringify(scale)}`);
  }
  if (!Array.isArray(ratio) || ratio.length !== 2 || !(ratio[0] > 0 && ratio[0] <= ratio[1] && Number.isFinite(ratio[1]))) {
    throw new Error(`randomErasing: ratio must be [min, max] with 0 < min <= max; got ${JSON.stringify(ratio)}`);
  }
  const finite = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
  const ok = value === 'random' || finite(value) || (Array.isArray(value) && value.length > 0 && value.every(finite));
  if (!ok) throw new Error(`randomErasing: value must be a number, a list of numbers or 'random'; got ${JSON.stringify(value)}`);
  return { p, scale, ratio, value };
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A standard-normal sample (Box-Muller). */
function gaussian(rng: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
}

/**
 * One image's draw, in torchvision's order: the p test, then up to ten (area, log-ratio) tries for a box strictly
 * smaller than the image, then the noise if any, then the corner. null when the image is left as it is.
 */
export function erasingParams(shape: readonly [number, number, number], options: RandomErasingOptions, rng: Rng): ErasingBox | null {
  const { p, scale, ratio, value } = check(options);
  const [c, imgH, imgW] = shape;
  if (Array.isArray(value) && value.length !== 1 && value.length !== c) {
    throw new Error(`randomErasing: if value is a sequence, it should have either a single value or ${c} (number of input channels); got ${value.length}`);
  }
  if (!(rng.next() < p)) return null;
  const area = imgH * imgW;
  const [lo, hi] = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let t = 0; t < 10; t++) {
    const eraseArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(lo, hi));
    const h = roundHalfEven(Math.sqrt(eraseArea * aspect));
    const w = roundHalfEven(Math.sqrt(eraseArea / aspect));
    if (!(h < imgH && w < imgW)) continue;
    const v = value === 'random'
      ? Float32Array.from({ length: c * h * w }, () => gaussian(rng))
      : Float32Array.from(typeof value === 'number' ? [value] : value);
    return { top: rng.int(imgH - h + 1), left: rng.int(imgW - w + 1), height: h, width: w, value: v };
  }
  // torchvision then "erases" the whole image with itself: nothing changes.
  return null;
}

/** A copy of the batch x with boxes[i] erased in image i (torchvision.transforms.functional.erase per image). */
export function eraseBoxes(x: Tensor, boxes: readonly (ErasingBox | null)[]): Tensor {
  if (!(x instanceof Tensor) || x.ndim !== 4) throw new Error('eraseBoxes: expected an NCHW tensor');
  const [n, c, imgH, imgW] = x.shape as [number, number, number, number];
  if (boxes.length !== n) throw new Error(`eraseBoxes: ${boxes.length} boxes for ${n} images`);
  return tidy(() => {
    const out = x.clone();
    noGrad(() => boxes.forEach((b, i) => {
      if (!b) return;
      const { top, left, height: h, width: w, value } = b;
      if (top < 0 || left < 0 || h < 1 || w < 1 || top + h > imgH || left + w > imgW) {
        throw new Error(`eraseBoxes: box ${h}x${w} at (${top}, ${left}) does not fit image ${i} (${imgH}x${imgW})`);
      }
      const region = out.select(0, i).narrow(1, top, h).narrow(2, left, w);
      if (value.length === c * h * w) region.copy_(tensor(value, { shape: [c, h, w], device: x.device }));
      else if (value.length === 1) region.fill_(value[0]!);
      else if (value.length === c) for (let ch = 0; ch < c; ch++) region.select(0, ch).fill_(value[ch]!);
      else throw new Error(`eraseBoxes: box ${i} has ${value.length} values for ${c} channels of ${h}x${w}`);
    }));
    return out;
  });
}

/** torchvision's RandomErasing as a batch transform: each image gets its own draw from the Rng. */
export function randomErasing(options: RandomErasingOptions = {}): Transform {
  check(options);
  return (x, rng) => {
    if (!rng) throw new Error('randomErasing: a random transform needs an Rng');
    if (!(x instanceof Tensor) || x.ndim !== 4) throw new Error('randomErasing: expected an NCHW tensor');
    const [n, c, h, w] = x.shape as [number, number, number, number];
    const boxes = Array.from({ length: n }, () => erasingParams([c, h, w], options, rng));
    return eraseBoxes(x, boxes);
  };
}
