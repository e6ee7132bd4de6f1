// resnet-ts serve: an HTTP classification server with dynamic batching, a page, /healthz and /metrics.
//   npm run serve -- --model resnet50 --weights resnet50-11ad3fa6.pth --port 8080
//   curl --data-binary @cat.jpg 'http://127.0.0.1:8080/v1/classify?k=5'
import './omp-passive.ts'; // first: before the addon (and its libgomp) loads
import { Command, InvalidArgumentError, Option } from 'commander';
import { session } from '../lib/inference/index.ts';
import { createClassifyServer } from '../lib/serve/index.ts';
import type { Device } from '../lib/tensor.ts';
import { commandName, float, int, positiveInt } from './cli.ts';
import { UsageError, checkDevice, loadClassifier } from './classifier.ts';

interface Options {
  model: string; weights: string; port: number; host: string; maxBatch: number; maxDelayMs: number; queue: number;
  device: string; amp?: 'bf16' | 'fp16'; maxBody: number; maxPixels: number; maxDecodedMb: number; threads?: number;
  workers: number; resize?: number; crop?: number; optimize: boolean; warmup?: 'all' | number[];
}

/** --warmup: 'all' or batch sizes separated by commas (each checked against --max-batch once that is known). */
function warmupList(v: string): 'all' | number[] {
  if (v.trim() === 'all') return 'all';
  const sizes = v.split(',').map((x) => x.trim());
  if (!sizes.every((x) => /^[1-9]\d*$/.test(x))) throw new InvalidArgumentError("expected 'all' or batch sizes separated by commas, e.g. 1,8,32");
  return sizes.map(Number);
}

/** A byte size: 20mb, 512k, 1.5MB or a plain number of bytes. */
function bytes(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$/i.exec(v);
  if (!m) throw new InvalidArgumentError('expected a size such as 20mb, 512k or 1048576');
  const n = Math.floor(Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase()));
  if (n < 1) throw new InvalidArgumentError('expected a size of at least 1 byte');
  return n;
}


async function main(): Promise<void> {
  const program = new Command(commandName('serve'))
    .description('Serve an ImageNet classifier over HTTP: POST /v1/classify (image body or multipart form), GET / (page), /healthz, /metrics.')
    .requiredOption('--model <name>', 'registry model name, e.g. resnet50')
    .requiredOption('--weights <name|file|url>', 'published weights (IMAGENET1K_V2, DEFAULT), a .pth/.safetensors file or a URL')
    .option('--port <n>', 'TCP port (0 picks a free one)', int(0), 8080)
    .option('--host <addr>', 'address to bind; 127.0.0.1 keeps the server local', '127.0.0.1')
    .option('--max-batch <n>', 'largest batch one forward sees', positiveInt, 32)
    .option('--max-delay-ms <ms>', 'how long a request waits for others to join its batch', float(0), 5)
    .option('--queue <n>', 'images that may wait for a batch; beyond it requests get 503', positiveInt, 256)
    .option('--device <device>', 'cpu, cuda or cuda:N', 'cpu')
    .addOption(new Option('--amp <dtype>', 'mixed precision (autocast) in the forward').choices(['bf16', 'fp16']))
    .addOption(new Option('--max-body <size>', 'largest request body (k, m, g are powers of 1024)').argParser(bytes).default(20 * 2 ** 20, '20mb'))
    .option('--max-pixels <n>', 'largest image (width x height), checked from its header before decoding', positiveInt, 40_000_000)
    .option('--max-decoded-mb <n>', 'decoded images held at once, in MiB, before requests get 503', positiveInt, 1024)
    .option('--threads <n>', 'libtorch threads of each inference worker (default: all cores)', positiveInt)
    .option('--workers <n>', 'inference workers (batches run concurrently)', positiveInt, 1)
    .option('--resize <n>', "shorter side before the crop (default: the weights' eval preset, else 256)", positiveInt)
    .option('--crop <n>', "center crop size (default: the weights' eval preset, else 224)", positiveInt)
    .option('--no-optimize', "run the model's own forward instead of its fused inference copy (CPU: BatchNorm folded, oneDNN kernels)")
    .addOption(new Option('--warmup <sizes>', "batch sizes each worker runs once on blank images before the server listens, so the first batches of those sizes skip the set-up a new size costs (e.g. 1,8,32), or 'all' (1 to --max-batch); default none").argParser(warmupList))
    .addHelpText('after', '\nEnvironment: OMP_WAIT_POLICY (default here PASSIVE: the model\'s OpenMP threads sleep between ops, leaving the\ncores to decoding; ACTIVE spins, which pays only when one request at a time arrives).')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .showHelpAfterError();
  program.parse(process.argv);
  const o = program.opts<Options>();
  try {
    const warmup = o.warmup === 'all' ? Array.from({ length: o.maxBatch }, (_, i) => i + 1) : o.warmup;
    const tooLarge = warmup?.find((n) => n > o.maxBatch);
    if (tooLarge !== undefined) throw new UsageError(`--warmup: batch size ${tooLarge} is larger than --max-batch (${o.maxBatch})`);
    const device = checkDevice(o.device);
    const { model, numClasses, resize, crop, categories } = await loadClassifier(o.model, o.weights, device);
    const started = performance.now();
    if (warmup?.length) console.log(`resnet-ts serve: warming up batch sizes ${o.warmup === 'all' ? `1 to ${o.maxBatch}` : warmup.join(', ')} in each worker ...`);
    const s = await session(model, {
      device, threads: o.threads, maxBatch: o.maxBatch, workers: o.workers, amp: o.amp, resize: o.resize ?? resize, crop: o.crop ?? crop, categories,
      optimize: o.optimize, warmup,
    });
    if (warmup?.length) console.log(`resnet-ts serve: warmed up in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const server = createClassifyServer({
      session: s, model: o.model, numClasses, maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs, queue: o.queue,
      maxBody: o.maxBody, maxPixels: o.maxPixels, maxDecodedBytes: o.maxDecodedMb * 2 ** 20,
    });
    const { url } = await server.listen(o.port, o.host);
    console.log(`resnet-ts serve: ${o.model} on ${url} (device ${device}${s.optimized ? ', fused' : ''}, max batch ${o.maxBatch}, max delay ${o.maxDelayMs} ms, queue ${o.queue})`);
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        console.error(`serve: ${signal} again, exiting now`);
        process.exit(1);
      }
      stopping = true;
      console.log(`serve: ${signal}: finishing requests in flight`);
      server.close().then(() => {
        console.log('serve: stopped');
        process.exit(0);
      }, (e: Error) => {
        console.error(`serve: ${e.message}`);
        process.exit(1);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  } catch (e) {
    console.error(`serve: ${(e as Error).message}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  }
}

await main();
