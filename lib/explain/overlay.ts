// A Grad-CAM map drawn over its image as people expect to see it: the jet colour map blended half and half
// with the picture (as pytorch-grad-cam's show_cam_on_image), written as PNG with sharp.
import sharp from 'sharp';

/** An 8-bit RGB image, rows of pixels with the channels interleaved (HWC). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

// The piecewise-linear jet map (blue → cyan → yellow → red) for t in [0, 1].
function jet(t: number): [number, number, number] {
  const c = (v: number): number => Math.round(255 * Math.min(1, Math.max(0, v)));
  return [c(1.5 - Math.abs(4 * t - 3)), c(1.5 - Math.abs(4 * t - 2)), c(1.5 - Math.abs(4 * t - 1))];
}

/** Blends a [height × width] map of values in 0..1 over the image: (1 - alpha)·image + alpha·jet(map). */
export function overlayHeatmap(image: RgbImage, map: ArrayLike<number>, alpha = 0.5): RgbImage {
  const { width, height } = image;
  if (map.length !== width * height) throw new Error(`overlayHeatmap: the map has ${map.length} values for a ${width}x${height} image`);
  if (image.data.length !== width * height * 3) throw new Error(`overlayHeatmap: image data holds ${image.data.length} bytes, expected ${width}x${height}x3`);
  const out = new Uint8Array(image.data.length);
  for (let p = 0; p < width * height; p++) {
    const rgb = jet(map[p]!);
    for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round((1 - alpha) * image.data[p * 3 + c]! + alpha * rgb[c]!);
  }
  return { data: out, width, height };
}

/** An RGB image encoded as PNG. */
export function encodePng(image: RgbImage): Promise<Uint8Array> {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
}

/** Writes an RGB image as a PNG file. */
export async function writePng(path: string, image: RgbImage): Promise<void> {
  await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toFile(path);
}
