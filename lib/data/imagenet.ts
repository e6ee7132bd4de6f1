// ImageNet evaluation data: torchvision's eval preprocessing in libtorch, the validation set's two
// layouts (class folders, or a flat folder with a ground-truth file) and the class index order.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { stack, tensor } from '../creation.ts';
import { tidy, type Device, type Tensor } from '../tensor.ts';
import { centerCrop, normalize, resize } from './transforms.ts';
import { compareCodePoints, isImageFile, listImageFolder, type DecodedImage } from './image-folder.ts';
import { IMAGENET_CATEGORIES, IMAGENET_WNIDS } from './imagenet-classes.ts';

export { IMAGENET_CATEGORIES, IMAGENET_WNIDS };

/** Per-channel mean and std of ImageNet's training pixels in [0, 1] (torchvision's Normalize). */
export const IMAGENET_MEAN: readonly number[] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly number[] = [0.229, 0.224, 0.225];

/** Sizes of torchvision's eval preset: shorter side resized to `resize`, then a `crop` square from the centre. */
export interface EvalTransform {
  resize: number;
  crop: number;
  device?: Device;
}

// torchvision's weight files whose eval preset resizes to 232 (IMAGENET1K_V2, and ResNeXt101_64X4D's V1).
const RESIZE_232 = ['resnet50-11ad3fa6', 'resnet101-cd907fc2', 'resnet152-f82ba261', 'resnext50_32x4d-1a0047aa',
  'resnext101_32x8d-110c445d', 'resnext101_64x4d-173b62eb', 'wide_resnet50_2-9ba9bcbe', 'wide_resnet101_2-d733dc28'];

/** The resize torchvision's preset uses for a weights file: 232 for the V2 recipes (known names or "v2" in the name), else 256. */
export function defaultResize(weightsPath: string): number {
  const name = basename(weightsPath).toLowerCase();
  return RESIZE_232.some((k) => name.startsWith(k)) || /(^|[^a-z0-9])v2([^a-z0-9]|$)/.test(name) ? 232 : 256;
}

/** Resizes and center-crops one decoded image: [3, crop, crop] float32 holding whole values 0..255. */
export function resizeCrop(img: DecodedImage, { resize: size, crop, device = 'cpu' }: EvalTransform): Tensor {
  const { width, height } = img;
  if (img.data.length !== width * height * 3) throw new Error(`image data holds ${img.data.length} bytes, expected ${width}x${height}x3`);
  return tidy(() => {
    const x = tensor(img.data, { shape: [height, width, 3], dtype: 'uint8' }).to(device).permute(2, 0, 1).unsqueeze(0).float();
    // torchvision resizes uint8 tensors in float and rounds back to uint8; PIL also yields uint8.
    const resized = resize(size)(x).round().clamp(0, 255);
    return centerCrop(crop, { pad: true })(resized).squeeze(0).contiguous();
  });
}

/** torchvision's eval preset on a batch of decoded images: [N, 3, crop, crop], scaled to [0, 1] and normalized with ImageNet's mean and std. */
export function evalBatch(images: readonly DecodedImage[], t: EvalTransform): Tensor {
  if (!Array.isArray(images)) throw new TypeError('evalBatch: images must be an array of decoded images ({ data, width, height }, as data.decodeImage makes)');
  if (images.length === 0) throw new Error('evalBatch: no images');
  images.forEach((img, i) => {
    if (!img || typeof img !== 'object' || !ArrayBuffer.isView(img.data)) {
      throw new TypeError(`evalBatch: image ${i} must be a decoded image { data, width, height } (await data.decodeImage(path) makes one from a file); got ${typeof img === 'string' ? `the string '${img}'` : String(img)}`);
    }
  });
  return tidy(() => normalize(IMAGENET_MEAN, IMAGENET_STD)(stack(images.map((img) => resizeCrop(img, t))).div(255)));
}

// ---- ground truth ----

const WNID = /^n\d{8}$/;

/** The image id of a validation file: its name without the extension (ILSVRC2012_val_00000001). */
export function imageId(path: string): string {
  const name = basename(path);
  return name.slice(0, name.length - extname(name).length);
}

/**
 * WordNet ids by ILSVRC2012_ID (index 0 = ID 1) from a text synset mapping: a line per synset holding a
 * wnid, optionally after its ID ("1 n02119789") or before its words ("n02119789 kit fox, ...").
 */
export function parseSynsetMapping(text: string): string[] {
  const out: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const tokens = line.trim().split(/[\s,]+/);
    if (tokens[0] === '') return;
    const at = tokens.findIndex((t) => WNID.test(t));
    if (at < 0) throw new Error(`synset mapping line ${i + 1}: no WordNet id (n########) in "${line.trim()}"`);
    const id = at > 0 && /^\d+$/.test(tokens[0]!) ? Number(tokens[0]) : out.length + 1;
    out[id - 1] = tokens[at]!;
  });
  return out;
}

/**
 * The devkit's ILSVRC2012_validation_ground_truth.txt: line i is the ILSVRC2012_ID of
 * ILSVRC2012_val_<i, 8 digits>. A file of wnids a line (TF's synset labels) needs no mapping.
 */
export function parseDevkitGroundTruth(text: string, synsets?: readonly string[]): Map<string, string> {
  const labels = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    let wnid: string | undefined;
    if (WNID.test(line)) wnid = line;
    else if (/^\d+$/.test(line)) {
      if (!synsets) throw new Error('the ground truth holds ILSVRC2012_IDs: pass the synset mapping (--synsets) that names them');
      wnid = synsets[Number(line) - 1];
      if (!wnid) throw new Error(`ground truth line ${i + 1}: ILSVRC2012_ID ${line} is not in the synset mapping (${synsets.length} synsets)`);
    } else throw new Error(`ground truth line ${i + 1}: expected an ILSVRC2012_ID or a WordNet id; got "${line}"`);
    labels.set(`ILSVRC2012_val_${String(labels.size + 1).padStart(8, '0')}`, wnid);
  });
  return labels;
}

/** LOC_val_solution.csv (ImageId,PredictionString): the first wnid of each box list is the image's class. */
export function parseLocSolution(text: string): Map<string, string> {
  const labels = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  if (!/^ImageId\s*,/i.test(lines[0] ?? '')) throw new Error('LOC_val_solution.csv: expected the header "ImageId,PredictionString"');
  lines.slice(1).forEach((line, i) => {
    if (!line.trim()) return;
    const [id, boxes] = line.split(',');
    const wnid = boxes?.trim().split(/\s+/)[0];
    if (!id || !wnid || !WNID.test(wnid)) throw new Error(`LOC_val_solution.csv line ${i + 2}: expected "ImageId,n######## x y x y ..."; got "${line}"`);
    labels.set(id.trim(), wnid);
  });
  return labels;
}

/** Reads a ground-truth file in either format: image id → wnid. */
export function readGroundTruth(labelsPath: string, synsetsPath?: string): Map<string, string> {
  const text = readText(labelsPath, 'ground truth file');
  if (/^ImageId\s*,/i.test(text)) return parseLocSolution(text);
  return parseDevkitGroundTruth(text, synsetsPath ? parseSynsetMapping(readText(synsetsPath, 'synset mapping')) : undefined);
}

function readText(path: string, what: string): string {
  // Node 20's readFileSync(fd, 'utf8') aborts the process on a file descriptor of -0.
  if (typeof path !== 'string') throw new TypeError(`the ${what} path must be a string; got ${typeof path}`);
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

// ---- the validation set ----

/** A labelled evaluation set: class names (the class index is the position) and [path, label] samples. */
export interface EvalSet {
  classes: string[];
  samples: Array<[path: string, label: number]>;
}

/** A flat folder of validation images labelled by a ground-truth map; classes are the 1000 sorted wnids. */
export function listFlatFolder(dir: string, labels: ReadonlyMap<string, string>, classes: readonly string[] = IMAGENET_WNIDS): EvalSet {
  const index = new Map(classes.map((c, i) => [c, i]));
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true }).filter((e) => !e.isDirectory() && isImageFile(e.name)).map((e) => e.name);
  } catch (e) {
    throw new Error(`cannot read folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (names.length === 0) throw new Error(`no images in ${dir}`);
  const samples: Array<[string, number]> = [];
  const unlabelled: string[] = [];
  for (const name of names.sort(compareCodePoints)) {
    const wnid = labels.get(imageId(name));
    if (wnid === undefined) { unlabelled.push(name); continue; }
    const label = index.get(wnid);
    if (label === undefined) throw new Error(`${name}: class ${wnid} is not an ImageNet-1k synset`);
    samples.push([join(dir, name), label]);
  }
  if (unlabelled.length) throw new Error(`${unlabelled.length} image(s) have no ground truth, e.g. ${unlabelled.slice(0, 3).join(', ')}`);
  return { classes: [...classes], samples };
}

/**
 * A class-folder set labelled by each folder's place in `names` (the model's classes: ImageNet's wnids, or the class
 * names a resnet-ts checkpoint records) instead of its place among the folders; null where a folder is not among
 * them. The same labels where the folders are all the classes, the right ones where they are a part: ImageFolder's
 * sorted order would score a folder of tabby cats (n02123045, class 281) as class 1 when it is the second of two.
 */
export function labelByName(set: EvalSet, names: readonly string[]): EvalSet | null {
  const index = new Map(names.map((w, i) => [w, i]));
  const to = set.classes.map((c) => index.get(c));
  if (to.some((i) => i === undefined)) return null;
  return { classes: [...names], samples: set.samples.map(([path, label]) => [path, to[label]!]) };
}

/** The validation set at dir: class folders, or a flat folder when a ground-truth file is given. */
export function listValidationSet(dir: string, { labels, synsets }: { labels?: string; synsets?: string } = {}): EvalSet {
  if (labels) return listFlatFolder(dir, readGroundTruth(labels, synsets));
  return listImageFolder(dir);
}
