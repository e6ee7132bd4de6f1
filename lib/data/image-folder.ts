// Image folders as torchvision's ImageFolder lists them, and image decoding to RGB bytes with sharp.
import { readdirSync, statSync, type Dirent } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

/** The file extensions torchvision's ImageFolder accepts (matched case-insensitively). */
export const IMG_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'];

/** A folder of class folders: class names sorted, samples as [path, class index]. */
export interface ImageFolderListing {
  classes: string[];
  samples: Array<[path: string, label: number]>;
}

/** An image decoded to 8-bit RGB, rows of pixels with the channels interleaved (HWC). */
export interface DecodedImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Whether a file name has one of the ImageFolder extensions. */
export function isImageFile(name: string, extensions: readonly string[] = IMG_EXTENSIONS): boolean {
  const lower = name.toLowerCase();
  return extensions.some((e) => lower.endsWith(e));
}

// Python sorts str by code point; JS's < compares UTF-16 units, which differs only around surrogates.
const ASTRAL = /[\uD800-\uFFFF]/;
/** Compares two strings in code-point order, as Python's sorted() does. */
export function compareCodePoints(a: string, b: string): number {
  if (ASTRAL.test(a) || ASTRAL.test(b)) return Buffer.compare(Buffer.from(a), Buffer.from(b));
  return a < b ? -1 : a > b ? 1 : 0;
}

function isDir(dir: string, e: Dirent): boolean {
  if (e.isDirectory()) return true;
  if (!e.isSymbolicLink()) return false;
  try {
    return statSync(join(dir, e.name)).isDirectory();
  } catch {
    return false; // a dangling link is a file name to os.walk, and not a class
  }
}

function readDir(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`folder not found: ${dir}`);
    if (code === 'ENOTDIR') throw new Error(`not a folder: ${dir}`);
    throw new Error(`cannot read folder ${dir}: ${(e as Error).message}`);
  }
}

/** The class folder names of dir, sorted (torchvision's find_classes; hidden and empty folders count). */
export function findClasses(dir: string): string[] {
  const classes = readDir(dir).filter((e) => isDir(dir, e)).map((e) => e.name).sort(compareCodePoints);
  if (classes.length === 0) throw new Error(`no class folders in ${dir}`);
  return classes;
}

/** Image files under dir in torchvision's make_dataset order: sorted(os.walk(followlinks=True)), then sorted names. */
export function walkImages(dir: string, extensions: readonly string[] = IMG_EXTENSIONS): string[] {
  const roots: Array<[root: string, files: string[]]> = [];
  const visit = (root: string, seen: Set<string>): void => {
    const files: string[] = [];
    for (const e of readDir(root)) {
      if (isDir(root, e)) {
        const sub = join(root, e.name);
        const real = statSync(sub);
        const key = `${real.dev}:${real.ino}`;
        if (!seen.has(key)) visit(sub, new Set(seen).add(key)); // a link back up would loop forever
      } else {
        files.push(e.name);
      }
    }
    roots.push([root, files]);
  };
  const top = statSync(dir);
  visit(dir, new Set([`${top.dev}:${top.ino}`]));
  roots.sort((a, b) => compareCodePoints(a[0], b[0]));
  const out: string[] = [];
  for (const [root, files] of roots) {
    for (const f of files.sort(compareCodePoints)) if (isImageFile(f, extensions)) out.push(join(root, f));
  }
  return out;
}

/** Lists an ImageFolder tree: class index = position of the folder among the sorted folder names. */
export function listImageFolder(dir: string, extensions: readonly string[] = IMG_EXTENSIONS): ImageFolderListing {
  const classes = findClasses(dir);
  const samples: Array<[string, number]> = [];
  classes.forEach((c, label) => {
    for (const path of walkImages(join(dir, c), extensions)) samples.push([path, label]);
  });
  return { classes, samples };
}

/**
 * Checks that an evaluation folder has exactly the training folder's classes: labels are positions among the
 * sorted folder names, so one class missing or extra would shift every label after it.
 */
export function checkSameClasses(train: readonly string[], val: readonly string[], trainDir: string, valDir: string): void {
  const missing = train.filter((c) => !val.includes(c));
  const extra = val.filter((c) => !train.includes(c));
  if (!missing.length && !extra.length) return;
  const parts = [...(missing.length ? [`missing from ${valDir}: ${missing.join(', ')}`] : []), ...(extra.length ? [`not in ${trainDir}: ${extra.join(', ')}`] : [])];
  throw new Error(`the class folders of ${valDir} must be those of ${trainDir} (labels are their sorted positions); ${parts.join('; ')}`);
}

/** PIL's CMYK to RGB conversion (Convert.c cmyk2rgb), which torchvision's loader applies via convert('RGB'). */
function cmykToRgb(cmyk: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const nk = 255 - cmyk[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      const t = cmyk[p * 4 + c]! * nk + 128;
      out[p * 3 + c] = Math.max(0, nk - (((t >> 8) + t) >> 8));
    }
  }
  return out;
}

/**
 * Decodes an image file (or its bytes) to 8-bit RGB as PIL's Image.open(f).convert('RGB') does:
 * grey is replicated, alpha dropped, CMYK converted with PIL's formula; no EXIF rotation.
 */
export async function decodeImage(input: string | Uint8Array): Promise<DecodedImage> {
  if (typeof input === 'string') input = await readFile(input); // one read serves both passes below
  const meta = await sharp(input).metadata();
  if (meta.space === 'cmyk') {
    const { data, info } = await sharp(input).pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return { data: cmykToRgb(data, info.width * info.height), width: info.width, height: info.height };
  }
  const { data, info } = await sharp(input).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded ${info.channels} channels, expected 3`);
  return { data, width: info.width, height: info.height };
}
