// Uploaded bytes to RGB pixels, or the 4xx that says what was wrong. sharp reads the header first under a
// pixel limit, so a decompression bomb is refused before any pixel is decoded; decoding then follows
// torchvision's loader (PIL's convert('RGB')) through lib/data's decodeImage.
import sharp, { type Metadata } from 'sharp';
import { decodeImage, type DecodedImage } from '../data/index.ts';

/** An error answered with its HTTP status and a JSON body. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

const FORMATS = new Set(['jpeg', 'png', 'webp']);

/** Format and size from the header: 415 for what is not a JPEG, PNG or WebP, 413 above maxPixels. */
export async function probe(bytes: Uint8Array, maxPixels: number, what: string): Promise<{ width: number; height: number }> {
  if (!bytes.length) throw new HttpError(400, `${what} is empty`);
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: maxPixels }).metadata();
  } catch (e) {
    const msg = (e as Error).message;
    if (/pixel limit/i.test(msg)) throw new HttpError(413, `${what} has more than ${maxPixels} pixels (a decompression bomb, or set --max-pixels)`);
    if (/unsupported image format/i.test(msg)) throw new HttpError(415, `${what} is not an image (send JPEG, PNG or WebP)`);
    throw new HttpError(400, `${what} is a corrupt image: ${msg}`);
  }
  if (!meta.format || !FORMATS.has(meta.format)) throw new HttpError(415, `${what} is ${meta.format ?? 'an unknown'} image; send JPEG, PNG or WebP`);
  const { width = 0, height = 0 } = meta;
  if (!width || !height) throw new HttpError(400, `${what} has no size in its header`);
  if (width * height > maxPixels) throw new HttpError(413, `${what} is ${width}x${height}, more than ${maxPixels} pixels (set --max-pixels)`);
  return { width, height };
}

/** Decodes probed bytes to 8-bit RGB; a truncated or corrupt image is a 400. */
export async function decode(bytes: Uint8Array, what: string): Promise<DecodedImage> {
  try {
    return await decodeImage(bytes);
  } catch (e) {
    throw new HttpError(400, `${what} is truncated or corrupt: ${(e as Error).message}`);
  }
}
