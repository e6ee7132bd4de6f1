// Top-5 ImageNet classes of images, with torchvision's eval preprocessing.
//   npm run predict -- --model resnet50 --weights resnet50-11ad3fa6.pth cat.jpg dog.png
import { Command } from 'commander';
import { positiveInt } from './cli.ts';
import { decodeImage, type DecodedImage } from '../lib/data/image-folder.ts';
import { IMAGENET_CATEGORIES, IMAGENET_WNIDS, defaultResize, evalBatch } from '../lib/data/imagenet.ts';
import { softmax } from '../lib/nn/functional.ts';
import { noGrad, tidy } from '../lib/tensor.ts';
import { UsageError, checkDevice, loadClassifier } from './classifier.ts';

interface Options { model: string; weights: string; resize?: number; crop: number; device: string; top: number; json: boolean }

/** One image's best classes: index, WordNet id and name (ImageNet-1k weights), probability. */
interface Guess { index: number; wnid: string | null; name: string; probability: number }

async function predict(files: string[], o: Options): Promise<Array<{ file: string; top: Guess[] }>> {
  const device = checkDevice(o.device);
  const { model, numClasses } = loadClassifier(o.model, o.weights, device);
  const images: DecodedImage[] = [];
  for (const f of files) {
    try {
      images.push(await decodeImage(f));
    } catch (e) {
      throw new UsageError(`cannot read image ${f}: ${(e as Error).message}`);
    }
  }
  const k = Math.min(o.top, numClasses);
  const [idx, prob] = tidy(() => {
    const x = evalBatch(images, { resize: o.resize ?? defaultResize(o.weights), crop: o.crop, device });
    const { values, indices } = softmax(noGrad(() => model.forward(x)).float(), 1).topk(k, 1);
    return [indices.toArray() as BigInt64Array, values.toArray() as Float32Array];
  });
  const imagenet = numClasses === 1000;
  return files.map((file, i) => ({
    file,
    top: Array.from({ length: k }, (_, j) => {
      const index = Number(idx[i * k + j]);
      return { index, wnid: imagenet ? IMAGENET_WNIDS[index]! : null, name: imagenet ? IMAGENET_CATEGORIES[index]! : `class ${index}`, probability: prob[i * k + j]! };
    }),
  }));
}

async function main(): Promise<void> {
  const program = new Command('predict')
    .description('Top ImageNet classes of images, with probabilities.')
    .argument('<images...>', 'image files (JPEG, PNG, WebP, TIFF)')
    .requiredOption('--model <name>', 'registry model name')
    .requiredOption('--weights <file>', '.pth or .safetensors state dict')
    .option('--resize <n>', 'shorter side before the crop (default 256; 232 for torchvision V2 weights)', positiveInt)
    .option('--crop <n>', 'center crop size', positiveInt, 224)
    .option('--device <device>', 'cpu, cuda or cuda:N', 'cpu')
    .option('--top <n>', 'how many classes to show', positiveInt, 5)
    .option('--json', 'print JSON instead of a table', false)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .showHelpAfterError();
  program.parse(process.argv);
  try {
    const results = await predict(program.args, program.opts<Options>());
    if (program.opts<Options>().json) console.log(JSON.stringify(results, null, 2));
    else for (const r of results) {
      console.log(r.file);
      for (const g of r.top) console.log(`  ${(100 * g.probability).toFixed(2).padStart(6)}%  ${g.name}${g.wnid ? ` (${g.wnid})` : ''}`);
    }
  } catch (e) {
    console.error(`predict: ${(e as Error).message}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  }
}

await main();
