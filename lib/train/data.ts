// The data a recipe trains on: train and test sources with what the transforms need to know (channels,
// image size, mean and std, class names), from an in-memory dataset, an image folder, or a name.
import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadCifar10, loadCifar100 } from '../data/cifar.ts';
import { loadFashionMnist, loadMnist } from '../data/fashion-mnist.ts';
import { folderSource } from '../data/folder-source.ts';
import { checkSameClasses, findClasses, listImageFolder } from '../data/image-folder.ts';
import { stratifiedSplit } from '../data/split.ts';
import { IMAGENET_MEAN, IMAGENET_STD } from '../data/imagenet.ts';
import { arraySource, type BatchSource } from '../data/loader.ts';
import type { ArrayDataset } from '../data/dataset.ts';
import { RecipeError, type Recipe } from './recipe.ts';
import { weightsPreset } from './transfer.ts';

/** Train and test sources and what the recipe's transforms need to know about their images. */
export interface TrainingData {
  train: BatchSource;
  test: BatchSource;
  /** Class names; the label is the position. */
  classes: readonly string[];
  channels: number;
  /** Side of the square the model sees (the stored size for in-memory sets, the training crop for folders). */
  size: number;
  /** Per-channel mean and std of the training pixels in [0, 1], for Normalize. */
  mean: readonly number[];
  std: readonly number[];
  /** Image folders: stored as resized squares, then cropped at random for training and centre-cropped for testing. */
  folder: boolean;
  /** Image folders: the side of the stored squares (the eval preset's resize). */
  resize?: number;
}

/** How a folder becomes training data: the crop, the stored size, and a held-out split when there is no val/. */
export interface FolderDataOptions {
  /** Shorter side the images are stored at before cropping (default imageSize / 0.875, 256 for 224). */
  resize?: number;
  /** Mean and std for Normalize (default ImageNet's). */
  mean?: readonly number[];
  std?: readonly number[];
  /** Without val/ (or test/): hold out this fraction of each class for testing (stratifiedSplit, seeded). */
  valSplit?: number;
  seed?: number;
}

/** The datasets known by name; anything else is a folder of class folders. */
export const DATASET_NAMES: readonly string[] = ['fashion-mnist', 'mnist', 'cifar10', 'cifar100'];

/** Training data from two in-memory splits. */
export function arrayData(train: ArrayDataset, test: ArrayDataset): TrainingData {
  return { train: arraySource(train), test: arraySource(test), classes: train.classes, channels: train.shape[0], size: train.shape[1], mean: train.mean, std: train.std, folder: false };
}

/**
 * Training data from a folder of class folders, or of train/ and val/ (or test/) folders of them (with the same
 * classes). A folder without val/ is split by valSplit (each class's share, seeded), or else tested on its own
 * training images. Images are stored at `resize` (default imageSize / 0.875: 256 for 224, as torchvision's
 * presets) and normalized with ImageNet's statistics unless told otherwise.
 */
export function folderData(dir: string, imageSize: number, o: FolderDataOptions = {}): TrainingData {
  const trainDir = existsSync(join(dir, 'train')) ? join(dir, 'train') : dir;
  const valDir = existsSync(join(dir, 'val')) ? join(dir, 'val') : existsSync(join(dir, 'test')) ? join(dir, 'test') : undefined;
  const stored = o.resize ?? Math.round(imageSize / 0.875);
  if (stored < imageSize) throw new RecipeError('imageSize', `the crop (${imageSize}) is larger than the stored images (${stored})`);
  // A classifier of one class learns nothing and scores 100 %: refused, as is a folder without class folders.
  const atLeastTwoClasses = (): void => {
    let found: string[];
    try {
      found = findClasses(trainDir);
    } catch (e) {
      throw new RecipeError('data', (e as Error).message);
    }
    if (found.length < 2) throw new RecipeError('data', `${trainDir} has ${found.length} class folder${found.length === 1 ? ` (${found[0]})` : 's'}; a classifier needs at least two`);
  };
  const common = { classes: [] as string[], channels: 3, size: imageSize, mean: o.mean ?? IMAGENET_MEAN, std: o.std ?? IMAGENET_STD, folder: true, resize: stored };
  if (o.valSplit !== undefined) {
    if (valDir) throw new RecipeError('valSplit', `${dir} has its own ${basename(valDir)}/ folder; --val-split is for a folder of class folders without one`);
    atLeastTwoClasses();
    const { train: tr, val } = stratifiedSplit(listImageFolder(trainDir).samples.map(([, l]) => l), o.valSplit, o.seed ?? 0);
    const train = folderSource(trainDir, stored, { subset: tr });
    if (!val.length) throw new RecipeError('valSplit', `${dir}: no class has two images to hold one out`);
    return { ...common, train, test: folderSource(trainDir, stored, { subset: val }), classes: train.classes };
  }
  atLeastTwoClasses();
  const train = folderSource(trainDir, stored);
  if (!valDir) return { ...common, train, test: train, classes: train.classes };
  // Checked here rather than by folderSource's sameClassesAs so that the CLIs report it as a --data mistake.
  try {
    checkSameClasses(train.classes, findClasses(valDir), trainDir, valDir);
  } catch (e) {
    throw new RecipeError('data', (e as Error).message);
  }
  const test = folderSource(valDir, stored);
  return { ...common, train, test, classes: train.classes };
}

/** The data a recipe names: a known dataset (from dir, or its default place) or a folder. */
export function loadTrainingData(name: string, { dir, imageSize = 224, ...folder }: { dir?: string; imageSize?: number } & FolderDataOptions = {}): TrainingData {
  const needDir = (): string => {
    if (dir === undefined) throw new RecipeError('data', `${name} needs the folder of its files (--data-dir <dir>)`);
    return dir;
  };
  if (folder.valSplit !== undefined && DATASET_NAMES.includes(name)) throw new RecipeError('valSplit', `${name} has its own test split; --val-split is for image folders`);
  switch (name) {
    case 'fashion-mnist':
      return arrayData(loadFashionMnist('train', dir), loadFashionMnist('test', dir));
    case 'mnist':
      return arrayData(loadMnist('train', needDir()), loadMnist('test', needDir()));
    case 'cifar10':
      return arrayData(loadCifar10('train', needDir()), loadCifar10('test', needDir()));
    case 'cifar100':
      return arrayData(loadCifar100('train', needDir()), loadCifar100('test', needDir()));
    default:
      if (!existsSync(name) || !statSync(name).isDirectory()) throw new RecipeError('data', `'${name}' is neither a known dataset (${DATASET_NAMES.join(', ')}) nor a folder`);
      return folderData(name, imageSize, folder);
  }
}

/**
 * The data of a recipe, with the eval preset of its weights when they have one (V2's resize 232 and crop 224; a
 * crop of imageSize instead scales the resize with it) and its held-out split.
 */
export function loadRecipeData(r: Recipe, { dir }: { dir?: string } = {}): TrainingData {
  const preset = weightsPreset(r);
  const imageSize = r.imageSize ?? preset?.crop;
  const resize = preset && imageSize !== undefined ? Math.round((preset.resize * imageSize) / preset.crop) : undefined;
  return loadTrainingData(r.data, { dir, imageSize, resize, mean: preset?.mean, std: preset?.std, valSplit: r.valSplit, seed: r.seed });
}
