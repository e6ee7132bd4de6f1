// npm run train -- [flags]: trains a registry model on Fashion-MNIST, MNIST, CIFAR-10/100 or an image
// folder; writes metrics.jsonl, summary.json, report.html and checkpoints to --out. Ctrl-C or SIGTERM
// saves a checkpoint and exits 130 or 143 (a second Ctrl-C exits at once); --resume continues from it.
// Flags become a Recipe, buildTraining() makes the model, optimizer, schedule and loaders, fit() runs them.
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { commandName, float, int, ints, stopOnSignals } from './cli.ts';
import { launch } from './launch.ts';
import { applyWaitPolicy } from './omp-policy.ts';
import type { Device } from '../lib/index.ts';
import type { FreezeSpec, Recipe } from '../lib/train/index.ts';

// How OpenMP's threads wait (spinning where the run has the cores to itself, passively where it shares them)
// must be chosen before libtorch loads, hence the dynamic import.
const ompNote = await applyWaitPolicy();
const { models, setNumThreads, cuda, train, distributed: dist } = await import('../lib/index.ts');

const EXIT_USAGE = 2;

// The flag (commander's key) of each recipe field a preset may set, where the names differ.
const FLAG_KEY: Partial<Record<string, string>> = { weightDecay: 'wd', decayNormAndBias: 'wdAll', warmupEpochs: 'warmup' };
const kebab = (k: string): string => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
/** A preset as the flags it stands for. */
const presetFlags = (name: string): string => Object.entries(train.PRESETS[name]!)
  .map(([k, v]) => (k === 'emaDecay' ? `--ema --ema-decay ${v}` : typeof v === 'boolean' ? (v ? `--${kebab(FLAG_KEY[k] ?? k)}` : '') : `--${kebab(FLAG_KEY[k] ?? k)} ${v}`))
  .filter(Boolean).join(' ');

const program = new Command(commandName('train'))
  .description('Train a ResNet/ResNeXt on Fashion-MNIST (default), MNIST, CIFAR-10/100 or an image folder.')
  .addOption(new Option('--recipe <name>', `a named recipe whose values the other flags override; best: ${presetFlags('best')} (on 2 CPU cores add --nproc-per-node 2 --batch-size 64 --channels-last: 94.66 % in 39 min on an AMD EPYC, README)`).choices(Object.keys(train.PRESETS)).default('default'))
  .option('--model <name>', `model from the registry (${models.list().length} names, e.g. resnet20, resnet56, resnet18)`, 'resnet20')
  .option('--data <name|folder>', 'fashion-mnist | mnist | cifar10 | cifar100 | a folder of class folders', 'fashion-mnist')
  .option('--data-dir <dir>', 'where the dataset files are (default for fashion-mnist: Debian\'s /usr/share/datasets/fashion-mnist)')
  .option('--epochs <n>', 'epochs', int(1), 4)
  .option('--batch-size <n>', 'training batch size', int(1), 128)
  .option('--eval-batch-size <n>', 'evaluation batch size', int(1), 500)
  .addOption(new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'adamw']).default('sgd'))
  .option('--lr <x>', 'peak learning rate', float(0), 0.1)
  .option('--momentum <x>', 'SGD momentum', float(0), 0.9)
  .option('--nesterov', 'Nesterov momentum', false)
  .addOption(new Option('--schedule <name>', 'learning-rate schedule, stepped per batch').choices(['cosine', 'multistep', 'onecycle', 'constant']).default('cosine'))
  .option('--milestones <epochs>', 'multistep: comma-separated epochs where lr drops ×0.1 (default: 50%,75% of --epochs)', ints)
  .option('--warmup <epochs>', 'linear warm-up epochs before cosine/multistep/constant (may be fractional)', float(0), 0.2)
  .option('--wd <x>', 'weight decay', float(0), 5e-4)
  .option('--wd-all', 'apply weight decay to BatchNorm weights and biases too', false)
  .option('--label-smoothing <x>', 'label smoothing for cross-entropy', float(0), 0)
  .option('--clip-grad <x>', 'clip the gradient norm to this value', float(0))
  .addOption(new Option('--augment <kind>', 'training augmentation (crop-flip: random crop with padding + horizontal flip)').choices(['crop-flip', 'crop', 'flip', 'none']).default('flip'))
  .option('--crop-padding <n>', 'padding of the random crop', int(0), 2)
  .option('--random-erasing <p>', 'random erasing (torchvision RandomErasing, after normalisation) with this probability per training image', float(0), 0)
  .option('--ema', 'evaluate and checkpoint an exponential moving average of the weights instead of the raw model (timm\'s --model-ema)')
  .option('--no-ema', 'no weight average (e.g. to turn off --recipe best\'s)')
  .option('--ema-decay <x>', 'with --ema: the average\'s decay per step', float(0), 0.999)
  .option('--ema-warmup', 'with --ema: timm\'s warm-up, the decay ramping as 1 - (1 + step)^(-2/3) up to --ema-decay', false)
  .option('--tta', 'evaluate with test-time flips: the mean logits of each image and its mirror')
  .option('--no-tta', 'no test-time flips (e.g. to turn off --recipe best\'s)')
  .addOption(new Option('--device <device>', 'cpu or cuda').choices(['cpu', 'cuda']).default('cpu'))
  .addOption(new Option('--amp <dtype>', 'mixed precision').choices(['bf16', 'fp16']))
  .option('--channels-last', 'channels-last memory format for images and weights (on CPU too: 1.15x faster for resnet20 on 2 AMD EPYC cores)', false)
  .option('--cuda-graph', 'CUDA: capture forward and backward once as a CUDA graph and replay it per batch (fixed shapes, one process, no fp16)', false)
  .option('--oom-retry', 'CUDA: on out-of-memory, train the batch again in 2, 4, ... slices (gradients accumulated) instead of stopping', false)
  .option('--workers <n>', 'batches prepared ahead; also the decoding threads for image folders', int(0), 2)
  .option('--threads <n>', 'CPU threads for tensor ops', int(1), availableParallelism())
  .option('--image-size <n>', 'image folders: training crop and test centre crop (default: the weights\' preset, else 224)', int(8))
  .option('--out <dir>', 'output directory (default: runs/<model>-<data>)')
  .option('--resume', 'continue from <out>/checkpoint.safetensors (refused if it was made with other flags)', false)
  .option('--force-resume', 'with --resume: continue even if the checkpoint was made with other flags', false)
  .option('--seed <n>', 'random seed (initialisation, shuffling, augmentation)', int(0), 0)
  .option('--limit-train <n>', 'use only the first n training images', int(1))
  .option('--limit-test <n>', 'use only the first n test images', int(1))
  .option('--log-every <n>', 'steps per point of the loss curve', int(1), 50)
  .option('--nproc-per-node <n>', 'data-parallel: launch n local processes (batch size is per process; CPU threads are shared out)', int(1), 1)
  .addOption(new Option('--backend <name>', 'data-parallel process-group backend (default: nccl with --device cuda, gloo on CPU)').choices(['gloo', 'nccl']))
  .option('--master-port <port>', 'data-parallel: rendezvous port for --nproc-per-node (default: a free port)', int(1))
  .option('--dist-timeout <s>', 'data-parallel: seconds a collective may wait for a peer before failing', int(1), 300)
  .option('--sync-bn', 'data-parallel: BatchNorm statistics over the global batch (SyncBatchNorm)', false)
  // Transfer learning: start from weights, freeze part of the net, give the classifier its own lr.
  .option('--weights <name|file>', 'start from published weights (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT; downloaded into torch\'s cache), ' +
    'a .pth/.safetensors file or a resnet-ts checkpoint; the classifier is kept only for the same classes, and image folders take the weights\' eval preset')
  .option('--freeze <what>', 'none | backbone (train only the classifier) | stages:N (freeze the stem and the first N stages, train the rest); frozen BatchNorm keeps its statistics', 'none')
  .option('--head-lr <x>', 'learning rate of the classifier (default: --lr), scheduled like the rest', float(0))
  .option('--val-split <x>', 'a folder without val/: hold out this fraction of each class for testing, drawn with --seed', fraction)
  .option('--quiet', 'no progress output', false)
  .addHelpText('after', '\nEnvironment: OMP_WAIT_POLICY (unset: chosen at start and printed on the first line; libgomp\'s default spin-waiting\n' +
    'when the run has the cores to itself, PASSIVE when other processes keep half a core or more busy, for data-parallel\n' +
    'runs and for image folders; set it to keep your choice).')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  .showHelpAfterError('(run with --help for all flags)');

type Flags = {
  recipe: string; randomErasing: number; ema?: boolean; emaDecay: number; emaWarmup: boolean; tta?: boolean;
  model: string; data: string; dataDir?: string; epochs: number; batchSize: number; evalBatchSize: number; optimizer: 'sgd' | 'adamw';
  lr: number; momentum: number; nesterov: boolean; schedule: Recipe['schedule']; milestones?: number[];
  warmup: number; wd: number; wdAll: boolean; labelSmoothing: number; clipGrad?: number; augment: Recipe['augment']; cropPadding: number;
  device: 'cpu' | 'cuda'; amp?: 'bf16' | 'fp16'; channelsLast: boolean; cudaGraph: boolean; oomRetry: boolean; workers: number; threads: number; imageSize: number;
  out?: string; resume: boolean; forceResume: boolean; seed: number; limitTrain?: number; limitTest?: number; logEvery: number; quiet: boolean;
  nprocPerNode: number; backend?: 'gloo' | 'nccl'; masterPort?: number; distTimeout: number; syncBn: boolean;
  weights?: string; freeze: string; headLr?: number; valSplit?: number;
};

/** A fraction strictly between 0 and 1. */
function fraction(v: string): number {
  const x = Number(v);
  if (v.trim() === '' || !(x > 0 && x < 1)) throw new InvalidArgumentError('expected a fraction between 0 and 1, e.g. 0.1');
  return x;
}

function usage(message: string): never {
  process.stderr.write(`train: ${message}\n`);
  process.exit(EXIT_USAGE);
}

function parseFlags(): Flags {
  try {
    program.parse(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version') process.exit(0);
      process.exit(EXIT_USAGE);
    }
    throw e;
  }
  const f = program.opts<Flags>();
  if (program.args.length) usage(`unexpected argument '${program.args[0]}'`);
  applyPreset(f);
  if (f.randomErasing > 1) usage('--random-erasing is a probability: it must be <= 1');
  if (!f.ema && (program.getOptionValueSource('emaDecay') === 'cli' || f.emaWarmup)) usage('--ema-decay and --ema-warmup apply only with --ema');
  if (f.emaDecay >= 1) usage('--ema-decay must be < 1');
  if (f.nesterov && f.optimizer !== 'sgd') usage('--nesterov applies only to --optimizer sgd');
  if (f.milestones && f.schedule !== 'multistep') usage('--milestones applies only to --schedule multistep');
  if (f.device === 'cuda' && !cuda.isAvailable()) usage('--device cuda: no CUDA device is available');
  if (f.wd > 1) usage(`--wd ${f.wd} is implausibly large (expected e.g. 5e-4)`);
  if (f.labelSmoothing >= 1) usage('--label-smoothing must be < 1');
  if (f.backend === 'nccl' && f.device !== 'cuda') usage('--backend nccl needs --device cuda');
  if (f.device === 'cuda' && f.nprocPerNode > cuda.deviceCount()) usage(`--nproc-per-node ${f.nprocPerNode}: only ${cuda.deviceCount()} CUDA device(s)`);
  if (f.forceResume && !f.resume) usage('--force-resume applies only with --resume');
  if (f.cudaGraph && f.device !== 'cuda') usage('--cuda-graph needs --device cuda (CUDA graphs replay GPU kernels)');
  if (f.cudaGraph && f.nprocPerNode > 1) usage('--cuda-graph is single-process: the DDP reducer\'s hooks cannot be captured');
  if (f.cudaGraph && f.amp === 'fp16') usage('--cuda-graph with --amp fp16: the grad scaler\'s changing scale cannot be replayed; use --amp bf16');
  if (f.oomRetry && f.device !== 'cuda') usage('--oom-retry applies only with --device cuda (it retries CUDA out-of-memory errors)');
  if (f.oomRetry && f.nprocPerNode > 1) usage('--oom-retry is single-process (ranks would disagree on when to retry)');
  try {
    train.parseFreeze(f.freeze);
  } catch (e) {
    usage(`--freeze: ${(e as Error).message}`);
  }
  return f;
}

/** Sets the preset's values of the flags not given on the command line. */
function applyPreset(f: Flags): void {
  const given = (key: string): boolean => program.getOptionValueSource(key) === 'cli';
  const flags = f as unknown as Record<string, unknown>;
  for (const [field, v] of Object.entries(train.PRESETS[f.recipe]!)) {
    if (field === 'emaDecay') {
      if (!given('ema')) f.ema = true;
      if (!given('emaDecay')) f.emaDecay = v as number;
    } else {
      const key = FLAG_KEY[field] ?? field;
      if (!given(key)) flags[key] = v;
    }
  }
}

function recipeOf(f: Flags): Recipe {
  return {
    model: f.model, data: f.data, epochs: f.epochs, batchSize: f.batchSize, evalBatchSize: f.evalBatchSize, optimizer: f.optimizer,
    lr: f.lr, momentum: f.momentum, nesterov: f.nesterov, weightDecay: f.wd, decayNormAndBias: f.wdAll, schedule: f.schedule,
    warmupEpochs: f.warmup, milestones: f.milestones, labelSmoothing: f.labelSmoothing, clipGrad: f.clipGrad, augment: f.augment,
    cropPadding: f.cropPadding, limitTrain: f.limitTrain, limitTest: f.limitTest, seed: f.seed, amp: f.amp, syncBn: f.syncBn,
    imageSize: train.DATASET_NAMES.includes(f.data) ? undefined : f.imageSize ?? train.weightsPreset({ model: f.model, weights: f.weights })?.crop ?? 224,
    weights: f.weights, freeze: f.freeze === 'none' ? undefined : (f.freeze as FreezeSpec), headLr: f.headLr, valSplit: f.valSplit,
    // Absent when off, so that the recipes of runs made before these flags existed still match.
    randomErasing: f.randomErasing || undefined, emaDecay: f.ema ? f.emaDecay : undefined, emaWarmup: (f.ema && f.emaWarmup) || undefined, tta: f.tta || undefined,
  };
}

// The flags of recipe fields named otherwise (the rest are the field in kebab case).
const FLAG_OF: Record<string, string> = { weightDecay: '--wd', decayNormAndBias: '--wd-all', warmupEpochs: '--warmup', worldSize: '--nproc-per-node', emaDecay: '--ema/--ema-decay' };
const flagOf = (field: string): string => FLAG_OF[field] ?? `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
const shown = (v: unknown): string => (v === undefined ? '(unset)' : Array.isArray(v) ? v.join(',') : String(v));

async function main(): Promise<void> {
  const f = parseFlags();
  const denv = dist.envFromTorchrun();
  if (f.nprocPerNode > 1 && !denv) {
    const args = process.argv.slice(2);
    const given = args.some((a) => a === '--threads' || a.startsWith('--threads='));
    const extra = given ? [] : ['--threads', String(Math.max(1, Math.floor(f.threads / f.nprocPerNode)))];
    const backend = f.backend ?? (f.device === 'cuda' ? 'nccl' : 'gloo');
    process.exit(await launch(f.nprocPerNode, { script: process.argv[1]!, args, extra, port: f.masterPort, backend, quiet: f.quiet }));
  }
  process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, f.workers));
  setNumThreads(f.threads);
  const rank = denv?.rank ?? 0;
  const world = denv?.worldSize ?? 1;
  if (denv && world > 1) dist.init(denv, { backend: f.backend ?? (f.device === 'cuda' ? 'nccl' : 'gloo'), timeoutMs: f.distTimeout * 1000 });
  if (rank !== 0) f.quiet = true;
  const device: Device = f.device === 'cuda' && denv ? (`cuda:${denv.localRank}` as Device) : f.device;
  // runs/<model>-<the data set's name or the folder's own name> (./photos, photos/ and /abs/photos all give photos).
  const out = f.out ?? join('runs', `${f.model}-${basename(resolve(f.data)).replace(/[^\w.-]+/g, '_')}${f.recipe === 'default' ? '' : `-${f.recipe}`}`);
  const recipe = recipeOf(f);
  if (rank === 0) await train.fetchWeights(recipe, { progress: !f.quiet });
  if (world > 1) dist.barrier();
  const data = train.loadRecipeData(recipe, { dir: f.dataDir });
  const t = train.buildTraining(recipe, data, { device, rank, world, workers: f.workers, channelsLast: f.channelsLast });
  const stop = stopOnSignals();
  const resuming = f.resume && existsSync(train.runPaths(out).checkpoint);
  if (f.resume && !resuming) console.log(`no checkpoint in ${out}; starting from scratch`);
  if (!f.quiet) {
    console.log(`training ${f.model} on ${f.data} (${t.train.source.length} train / ${t.test.source.length} test images) for ${f.epochs} epochs on ${device}` +
      `${world > 1 ? ` × ${world} ranks` : ''}, ` +
      `${f.threads} threads (${ompNote}), batch ${f.batchSize}, ${f.optimizer} lr ${f.lr} ${f.schedule}, wd ${f.wd}` +
      `${f.ema ? `, EMA ${f.emaDecay}` : ''}${f.tta ? ', flip TTA' : ''}${f.randomErasing ? `, random erasing ${f.randomErasing}` : ''}; writing ${out}${resuming ? ' (resuming)' : ''}`);
    if (recipe.weights) {
      console.log(`from ${recipe.weights}${recipe.freeze ? `, frozen: ${recipe.freeze}` : ''}${recipe.headLr !== undefined ? `, classifier lr ${recipe.headLr}` : ''}; ` +
        `${t.model.numParameters({ trainableOnly: true }).toLocaleString('en-US')} of ${t.model.numParameters().toLocaleString('en-US')} parameters train`);
    }
    if (data.folder && data.test === data.train) console.log(`${f.data} has no val/ folder: testing on the training images (hold some out with --val-split 0.1)`);
  }
  const { summary, interrupted } = await train.fit({
    ...t, outDir: out, resume: resuming, forceResume: f.forceResume, config: { ...f }, logEvery: f.logEvery, quiet: f.quiet, shouldStop: stop.requested,
    step: f.cudaGraph ? train.graphStep : undefined, oomRetry: f.oomRetry,
  });
  if (world > 1) dist.destroy();
  if (interrupted) process.exit(stop.exitCode());
  if (!f.quiet) {
    console.log(`test accuracy ${(100 * summary.testAccuracy!).toFixed(2)}% (best ${(100 * summary.bestTestAccuracy!).toFixed(2)}% at epoch ${summary.bestEpoch}) in ${summary.wallTime}s`);
    console.log(`wrote ${join(out, 'summary.json')}, ${join(out, 'metrics.jsonl')}, ${join(out, 'report.html')}`);
  }
}

main().catch((e: Error) => {
  if (e instanceof train.RecipeError) usage(`${flagOf(e.field)}: ${e.message}`);
  if (e instanceof train.ResumeMismatchError) {
    usage(`--resume: the checkpoint was made with other flags: ${e.differences.map((d) => `${flagOf(d.field)} ${shown(d.saved)} (now ${shown(d.now)})`).join(', ')}; ` +
      'rerun with those flags, or add --force-resume to continue it anyway');
  }
  console.error(`train: ${e.message}`);
  process.exit(1);
});
