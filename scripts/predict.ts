// Top-5 classes of images, with the eval preprocessing of the weights used; optionally a Grad-CAM overlay.
//   npm run predict -- --model resnet50 --weights IMAGENET1K_V2 cat.jpg dog.png
//   npm run predict -- --model resnet18 --weights resnet18-f37072fd.pth --cam cat-cam.png cat.jpg
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, extname, resolve } from 'node:path';
import { Command } from 'commander';
import { commandName, positiveInt } from './cli.ts';
import { decodeImage, type DecodedImage } from '../lib/data/image-folder.ts';
import { IMAGENET_WNIDS, evalBatch } from '../lib/data/imagenet.ts';
import { gradCam } from '../lib/explain/grad-cam.ts';
import { defaultCamLayer, seenCrop } from '../lib/explain/image.ts';
import { overlayHeatmap, writePng } from '../lib/explain/overlay.ts';
import { softmax } from '../lib/nn/functional.ts';
import type { Module } from '../lib/nn/module.ts';
import { noGrad, tidy, type Device } from '../lib/tensor.ts';
import { UsageError, checkDevice, inferenceModel, loadClassifier } from './classifier.ts';

interface Options { model?: string; weights: string; resize?: number; crop?: number; device: string; top: number; json: boolean; cam?: string; camLayer?: string; optimize: boolean }

/** One image's best classes: index, WordNet id (ImageNet-1k weights), label, probability (the fields of the session's classify()). */
interface Guess { index: number; wnid: string | null; label: string; probability: number }

/** Where the overlay of image i of n goes: the --cam path itself for one image, else with the image's name inserted. */
function camPath(cam: string, file: string, n: number): string {
  if (n === 1) return cam;
  const ext = extname(cam) || '.png';
  return `${cam.slice(0, cam.length - extname(cam).length)}.${basename(file, extname(file))}${ext}`;
}

async function writeCams(model: Module, images: DecodedImage[], files: string[], o: Options & { resize: number; crop: number; device: Device }, top: number[]): Promise<string[]> {
  let layer: string;
  try {
    layer = o.camLayer ?? defaultCamLayer(model);
  } catch (e) {
    throw new UsageError(`--cam: ${(e as Error).message} with --cam-layer`);
  }
  const maps = tidy(() => {
    const x = evalBatch(images, { resize: o.resize, crop: o.crop, device: o.device });
    try {
      return gradCam(model, x, { layer, classIndex: top }).cam.cpu().toArray() as Float32Array;
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  });
  const px = o.crop * o.crop;
  const written: string[] = [];
  for (let i = 0; i < images.length; i++) {
    const path = camPath(o.cam!, files[i]!, images.length);
    await writePng(path, overlayHeatmap(seenCrop(images[i]!, o.resize, o.crop), maps.subarray(i * px, (i + 1) * px)));
    written.push(path);
  }
  return written;
}

/** A --cam path PNG can be written to: a .png name (or none, .png added per image) in a folder that exists. */
function checkCamPath(cam: string): void {
  const ext = extname(cam).toLowerCase();
  if (ext && ext !== '.png') throw new UsageError(`--cam writes PNG files; give a .png path, not ${cam}`);
  const dir = dirname(resolve(cam));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--cam ${cam}: the folder ${dir} does not exist`);
}

async function predict(files: string[], o: Options): Promise<Array<{ file: string; top: Guess[]; cam?: string }>> {
  if (o.cam !== undefined) checkCamPath(o.cam);
  const device = checkDevice(o.device);
  const clf = await loadClassifier(o.model, o.weights, device);
  const images: DecodedImage[] = [];
  for (const f of files) {
    try {
      images.push(await decodeImage(f));
    } catch (e) {
      throw new UsageError(`cannot read image ${f}: ${(e as Error).message}`);
    }
  }
  const t = { ...o, device, resize: o.resize ?? clf.resize, crop: o.crop ?? clf.crop };
  const k = Math.min(o.top, clf.numClasses);
  const { net, fused } = inferenceModel(clf.model, { optimize: o.optimize, device });
  const [idx, prob] = tidy(() => {
    const x = evalBatch(images, { resize: t.resize, crop: t.crop, device });
    const { values, indices } = softmax(noGrad(() => net.forward(x)).float(), 1).topk(k, 1);
    return [indices.toArray() as BigInt64Array, values.toArray() as Float32Array];
  });
  if (fused) net.dispose();
  const cams = o.cam ? await writeCams(clf.model, images, files, t, files.map((_, i) => Number(idx[i * k]))) : undefined;
  const imagenet = clf.numClasses === 1000;
  return files.map((file, i) => ({
    file,
    top: Array.from({ length: k }, (_, j) => {
      const index = Number(idx[i * k + j]);
      return { index, wnid: imagenet ? IMAGENET_WNIDS[index]! : null, label: clf.categories?.[index] ?? `class ${index}`, probability: prob[i * k + j]! };
    }),
    ...(cams ? { cam: cams[i]! } : {}),
  }));
}

async function main(): Promise<void> {
  const program = new Command(commandName('predict'))
    .description('Top classes of images, with probabilities, using the eval preprocessing of the weights.')
    .argument('<images...>', 'image files (JPEG, PNG, WebP, TIFF)')
    .option('--model <name>', 'registry model name (default: the net a resnet-ts checkpoint was trained as)')
    .requiredOption('--weights <name|file|url>', 'published weights (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT; downloaded into torch\'s cache), a .pth/.safetensors state dict, ' +
      'a resnet-ts checkpoint (runs/<run>/checkpoint.safetensors: its class names and eval preset), or a URL')
    .option('--resize <n>', 'shorter side before the crop (default: the weights\' preset, e.g. 232 for V2; 256 for other files)', positiveInt)
    .option('--crop <n>', 'center crop size (default: the weights\' preset, 224)', positiveInt)
    .option('--device <device>', 'cpu, cuda or cuda:N', 'cpu')
    .option('--top <n>', 'how many classes to show', positiveInt, 5)
    .option('--cam <file.png>', 'write a Grad-CAM overlay of the top class (several images: the image name is inserted before the extension)')
    .option('--cam-layer <path>', 'module whose activations Grad-CAM explains (default: the last stage, layer4 of ResNets, features of DenseNets)')
    .option('--json', 'print JSON instead of a table', false)
    .option('--no-optimize', "run the model's own forward instead of its fused inference copy (CPU: BatchNorm folded, oneDNN kernels)")
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .showHelpAfterError();
  program.parse(process.argv);
  try {
    const results = await predict(program.args, program.opts<Options>());
    if (program.opts<Options>().json) console.log(JSON.stringify(results, null, 2));
    else for (const r of results) {
      console.log(r.file);
      for (const g of r.top) console.log(`  ${(100 * g.probability).toFixed(2).padStart(6)}%  ${g.label}${g.wnid ? ` (${g.wnid})` : ''}`);
      if (r.cam) console.log(`  Grad-CAM: ${r.cam}`);
    }
  } catch (e) {
    console.error(`predict: ${(e as Error).message}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  }
}

await main();
