// Fashion-MNIST (Xiao et al. 2017) and MNIST from their IDX files, plain or gzipped.
import { readIdx } from './idx.ts';
import { checkDataset, type ArrayDataset } from './dataset.ts';

/** Debian's dataset-fashion-mnist puts the files here. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export type Split = 'train' | 'test';

const FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

function loadIdxPair(name: string, dir: string, split: Split, classes: string[], mean: number, std: number): ArrayDataset {
  if (split !== 'train' && split !== 'test') throw new Error(`${name}: split must be 'train' or 'test'; got ${String(split)}`);
  const prefix = split === 'train' ? 'train' : 't10k';
  const images = readIdx(dir, `${prefix}-images-idx3-ubyte`);
  const labels = readIdx(dir, `${prefix}-labels-idx1-ubyte`);
  if (images.dims.length !== 3) throw new Error(`${name}: ${prefix}-images has rank ${images.dims.length}, expected 3 (N, H, W)`);
  if (labels.dims.length !== 1) throw new Error(`${name}: ${prefix}-labels has rank ${labels.dims.length}, expected 1`);
  if (images.dims[0] !== labels.dims[0]) throw new Error(`${name}: ${images.dims[0]} images but ${labels.dims[0]} labels in ${dir}`);
  return checkDataset({
    name: `${name}/${split}`,
    images: images.data,
    labels: labels.data,
    shape: [1, images.dims[1]!, images.dims[2]!],
    classes,
    mean: [mean],
    std: [std],
  });
}

/** Fashion-MNIST's train (60,000) or test (10,000) split from dir (default: Debian's copy). */
export function loadFashionMnist(split: Split, dir = FASHION_MNIST_DIR): ArrayDataset {
  return loadIdxPair('fashion-mnist', dir, split, FASHION_CLASSES, 0.286, 0.353);
}

/** MNIST's train or test split from a directory of its IDX files. */
export function loadMnist(split: Split, dir: string): ArrayDataset {
  return loadIdxPair('mnist', dir, split, DIGITS, 0.1307, 0.3081);
}
