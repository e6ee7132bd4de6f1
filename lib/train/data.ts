// The data a recipe trains on: train and test sources with what the transforms need to know (channels,
// image size, mean and std, class names), from an in-memory dataset, an image folder, or a name.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadCifar10, loadCifar100 } from '../data/cifar.ts';
import { loadFashionMnist, loadMnist } from '../data/fashion-mnist.ts';
import { folderSource } from '../data/folder-source.ts';
import { IMAGENET_MEAN, IMAGENET_STD } from '../data/imagenet.ts';
import { arraySource, type BatchSource } from '../data/loader.ts';
import type { ArrayDataset } from '../data/dataset.ts';
import { RecipeError } from './recipe.ts';

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
}

/** The datasets known by name; anything else is a folder of class folders. */
export const DATASET_NAMES: readonly string[] = ['fashion-mnist', 'mnist', 'cifar10', 'cifar100'];

/** Training data from two in-memory splits. */
export function arrayData(train: ArrayDataset, test: ArrayDataset): TrainingData {
  return { train: arraySource(train), test: arraySource(test), classes: train.classes, channels: train.shape[0], size: train.shape[1], mean: train.mean, std: train.std, folder: false };
}

/**
 * Training data from a folder of class folders, or of train/ and val/ (or test/) folders of them (with the same
 * classes); images are stored at imageSize / 0.875 (256 for 224, as torchvision's presets) and normalized with
 * ImageNet's statistics.
 */
export function folderData(dir: string, imageSize: number): TrainingData {
  const trainDir = existsSync(join(dir, 'train')) ? join(dir, 'train') : dir;
  const testDir = existsSync(join(dir, 'val')) ? join(dir, 'val') : existsSync(join(dir, 'test')) ? join(dir, 'test') : trainDir;
  const stored = Math.round(imageSize / 0.875);
  const train = folderSource(trainDir, stored);
  const test = folderSource(testDir, stored, { sameClassesAs: { dir: trainDir, classes: train.classes } });
  return { train, test, classes: train.classes, channels: 3, size: imageSize, mean: IMAGENET_MEAN, std: IMAGENET_STD, folder: true };
}

/** The data a recipe names: a known dataset (from dir, or its default place) or a folder. */
export function loadTrainingData(name: string, { dir, imageSize = 224 }: { dir?: string; imageSize?: number } = {}): TrainingData {
  const needDir = (): string => {
    if (dir === undefined) throw new RecipeError('data', `${name} needs the folder of its files (--data-dir <dir>)`);
    return dir;
  };
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
      return folderData(name, imageSize);
  }
}
