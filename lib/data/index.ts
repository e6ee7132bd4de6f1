// Datasets, transforms and the batch loader.
export * from './dataset.ts';
export { parseIdx, readIdx, type Idx } from './idx.ts';
export { loadFashionMnist, loadMnist, FASHION_MNIST_DIR, type Split } from './fashion-mnist.ts';
export { loadCifar10, loadCifar100 } from './cifar.ts';
export * from './transforms.ts';
export { randomErasing, erasingParams, eraseBoxes, type RandomErasingOptions, type ErasingBox } from './random-erasing.ts';
export { Rng, permutation } from './rng.ts';
export { DataLoader, arraySource, type Batch, type BatchSource, type LoaderOptions, type LoadedBatch } from './loader.ts';
export { folderSource, type FolderSourceOptions } from './folder-source.ts';
export { stratifiedSplit } from './split.ts';
export { listImageFolder, findClasses, checkSameClasses, walkImages, decodeImage, isImageFile, IMG_EXTENSIONS, type DecodedImage, type ImageFolderListing } from './image-folder.ts';
export { DecodeQueue, type DecodeResult } from './decode-queue.ts';
export * as imagenet from './imagenet.ts';
