// Image transforms on NCHW float tensors, applied to a whole batch at once. Random ones draw from
// an Rng so a batch's augmentation is reproducible from (seed, epoch, batch).
import { Tensor, tidy } from '../tensor.ts';
import { arange, stack, tensor, where } from '../creation.ts';
import * as F from '../nn/functional.ts';
import type { Rng } from './rng.ts';

/** A batch transform. */
export type Transform = (x: Tensor, rng?: Rng) => Tensor;

function need(rng: Rng | undefined, fn: string): Rng {
  if (!rng) throw new Error(`${fn}: a random transform needs an Rng`);
  return rng;
}

function check4d(x: Tensor, fn: string): [number, number, number, number] {
  if (!(x instanceof Tensor) || x.ndim !== 4) throw new Error(`${fn}: expected an NCHW tensor`);
  return x.shape as [number, number, number, number];
}

/** Crops one sample's window at (top, left) of size h x w. */
function window(x: Tensor, i: number, top: number, left: number, h: number, w: number): Tensor {
  return x.select(0, i).narrow(1, top, h).narrow(2, left, w);
}

/** Zero-pads by `padding` then takes a random size x size window per sample (torchvision RandomCrop). */
export function randomCrop(size: number, padding = 0): Transform {
  return (x, r) => tidy(() => {
    const rng = need(r, 'randomCrop');
    const [n, , h, w] = check4d(x, 'randomCrop');
    const p = padding ? F.pad(x, [padding, padding, padding, padding]) : x;
    const H = h + 2 * padding;
    const W = w + 2 * padding;
    if (size > H || size > W) throw new Error(`randomCrop: size ${size} exceeds the padded image ${H}x${W}`);
    const crops: Tensor[] = [];
    for (let i = 0; i < n; i++) crops.push(window(p, i, rng.int(H - size + 1), rng.int(W - size + 1), size, size));
    return stack(crops);
  });
}

/** Mirrors each sample left-right with probability p. */
export function randomHorizontalFlip(p = 0.5): Transform {
  return (x, r) => tidy(() => {
    const rng = need(r, 'randomHorizontalFlip');
    const [n, , , w] = check4d(x, 'randomHorizontalFlip');
    const mask = new Uint8Array(n).map(() => (rng.next() < p ? 1 : 0));
    const flipped = x.indexSelect(3, arange(w - 1, -1, -1, { device: x.device }));
    return where(tensor(mask, { shape: [n, 1, 1, 1], dtype: 'bool', device: x.device }), flipped, x);
  });
}

/** (x - mean) / std per channel. */
export function normalize(mean: readonly number[], std: readonly number[]): Transform {
  return (x) => tidy(() => {
    const [, c] = check4d(x, 'normalize');
    if (mean.length !== c || std.length !== c) throw new Error(`normalize: ${c} channels but ${mean.length} means and ${std.length} stds`);
    const m = tensor([...mean], { shape: [1, c, 1, 1], device: x.device, dtype: x.dtype });
    const s = tensor([...std], { shape: [1, c, 1, 1], device: x.device, dtype: x.dtype });
    return x.sub(m).div(s);
  });
}

/** [height, width] after resizing the shorter side to `size` (torchvision's _compute_resized_output_size). */
export function resizedSize(height: number, width: number, size: number): [number, number] {
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? [newLong, size] : [size, newLong];
}

/** Resizes so the shorter side is `size`, keeping the aspect ratio (bilinear, antialiased; unchanged at that size already, as torchvision). */
export function resize(size: number): Transform {
  return (x) => {
    const [, , h, w] = check4d(x, 'resize');
    const [oh, ow] = resizedSize(h, w, size);
    return oh === h && ow === w ? x.clone() : F.interpolateBilinear(x, [oh, ow], { antialias: true });
  };
}

// Python's round(), which torchvision uses for crop offsets and sizes: halves go to the even neighbour.
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  return v - f === 0.5 ? (f % 2 === 0 ? f : f + 1) : Math.round(v);
}

/**
 * The central size x size window, offsets rounded as torchvision's center_crop. A smaller image is an
 * error, or with `pad` zero-padded first (torchvision pads).
 */
export function centerCrop(size: number, { pad = false }: { pad?: boolean } = {}): Transform {
  return (x) => {
    let [, , h, w] = check4d(x, 'centerCrop');
    if (size > h || size > w) {
      if (!pad) throw new Error(`centerCrop: size ${size} exceeds the image ${h}x${w}`);
      const pw = Math.max(size - w, 0);
      const ph = Math.max(size - h, 0);
      x = F.pad(x, [pw >> 1, (pw + 1) >> 1, ph >> 1, (ph + 1) >> 1]);
      [, , h, w] = x.shape as [number, number, number, number];
    }
    return x.narrow(2, roundHalfEven((h - size) / 2), size).narrow(3, roundHalfEven((w - size) / 2), size);
  };
}

/** A random area and aspect ratio per sample, resized to size x size (torchvision RandomResizedCrop). */
export function randomResizedCrop(size: number, scale: [number, number] = [0.08, 1], ratio: [number, number] = [3 / 4, 4 / 3]): Transform {
  return (x, r) => tidy(() => {
    const rng = need(r, 'randomResizedCrop');
    const [n, , h, w] = check4d(x, 'randomResizedCrop');
    const out: Tensor[] = [];
    for (let i = 0; i < n; i++) {
      const [top, left, ch, cw] = cropBox(h, w, scale, ratio, rng);
      out.push(F.interpolateBilinear(window(x, i, top, left, ch, cw).unsqueeze(0), [size, size], { antialias: true }).squeeze(0));
    }
    return stack(out);
  });
}

/** torchvision's RandomResizedCrop.get_params: ten tries, then a central crop of the clamped ratio. */
function cropBox(h: number, w: number, scale: [number, number], ratio: [number, number], rng: Rng): [number, number, number, number] {
  const area = h * w;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let t = 0; t < 10; t++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const cw = roundHalfEven(Math.sqrt(target * aspect));
    const ch = roundHalfEven(Math.sqrt(target / aspect));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) return [rng.int(h - ch + 1), rng.int(w - cw + 1), ch, cw];
  }
  const inRatio = w / h;
  let cw = w;
  let ch = h;
  if (inRatio < ratio[0]) ch = roundHalfEven(w / ratio[0]);
  else if (inRatio > ratio[1]) cw = roundHalfEven(h * ratio[1]);
  return [Math.floor((h - ch) / 2), Math.floor((w - cw) / 2), ch, cw];
}

/** Applies transforms left to right, freeing the intermediates. */
export function compose(...ts: Transform[]): Transform {
  return (x, rng) => tidy(() => ts.reduce((y, t) => t(y, rng), x));
}
