// Batches from an ImageFolder tree: each image is decoded with sharp (on libuv's thread pool, so
// the next batches decode while the current one trains), resized so its shorter side is `size` and
// centre-cropped to a square, which lets a batch stack; random crops then run on the batch.
import { checkSameClasses, listImageFolder, decodeImage } from './image-folder.ts';
import { tensor, stack } from '../creation.ts';
import { Tensor, tidy } from '../tensor.ts';
import { centerCrop, resize } from './transforms.ts';
import type { BatchSource } from './loader.ts';

/** Options of folderSource. */
export interface FolderSourceOptions {
  /** The training source's classes: a folder with other classes is an Error naming them. */
  sameClassesAs?: { dir: string; classes: readonly string[] };
  /** Only these positions of the listing (e.g. one side of stratifiedSplit). */
  subset?: readonly number[];
}

/** A batch source over a folder of class folders; `classes` are the sorted folder names, `labels` each image's class. */
export function folderSource(dir: string, size: number, { sameClassesAs, subset }: FolderSourceOptions = {}): BatchSource & { classes: string[]; labels: number[] } {
  const listing = listImageFolder(dir);
  const { classes } = listing;
  const samples = subset ? subset.map((i) => listing.samples[i]!) : listing.samples;
  if (sameClassesAs) checkSameClasses(sameClassesAs.classes, classes, sameClassesAs.dir, dir);
  if (!samples.length) throw new Error(`${dir}: no images found in class folders`);
  const toSquare = (t: Tensor): Tensor => centerCrop(size)(resize(size)(t));
  return {
    classes,
    labels: samples.map(([, l]) => l),
    length: samples.length,
    async load(indices) {
      const picked = Array.from(indices, (i) => samples[i]!);
      const images = await Promise.all(
        picked.map(([path]) => decodeImage(path).catch((e: Error) => Promise.reject(new Error(`${path}: ${e.message}`)))),
      );
      return tidy(() => {
        const xs = images.map((im) =>
          toSquare(tensor(im.data, { shape: [1, im.height, im.width, 3] }).permute(0, 3, 1, 2).to('float32').div(255)).squeeze(0),
        );
        return { x: stack(xs), y: tensor(picked.map(([, l]) => l), { dtype: 'int64' }) };
      });
    },
  };
}
