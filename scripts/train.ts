// npm run train -- [flags]: trains a registry model on Fashion-MNIST, MNIST, CIFAR-10/100 or an image
// folder; writes metrics.jsonl, summary.json, report.html and checkpoints to --out. Ctrl-C saves a
// checkpoint and exits 130 (a second Ctrl-C exits at once); --resume continues from it.
import { availableParallelism } from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { float, int, ints } from './cli.ts';
import type { Device } from '../lib/index.ts';
import type { ArrayDataset } from '../lib/data/dataset.ts';
import type { BatchSource, Transform } from '../lib/data/index.ts';
import type { LrFn } from '../lib/optim/index.ts';
import type { ModelOptions } from '../lib/models/index.ts';

// libgomp's threads spin while waiting; on a shared 2-core machine a spinning thread starves the
// one doing the work and small ops take milliseconds. Passive waiting must be chosen before libtorch
// loads, hence the dynamic import.
process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
const { manualSeed, models, setNumThreads, cuda, data, optim, train, distributed: dist } = await import('../lib/index.ts');

const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;

const program = new Command('train')
  .description('Train a ResNet/ResNeXt on Fashion-MNIST (default), MNIST, CIFAR-10/100 or an image folder.')
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
  .addOption(new Option('--device <device>', 'cpu or cuda').choices(['cpu', 'cuda']).default('cpu'))
  .addOption(new Option('--amp <dtype>', 'mixed precision').choices(['bf16', 'fp16']))
  .option('--channels-last', 'channels-last memory format (CUDA)', false)
  .option('--workers <n>', 'batches prepared ahead; also the decoding threads for image folders', int(0), 2)
  .option('--threads <n>', 'CPU threads for tensor ops', int(1), availableParallelism())
  .option('--image-size <n>', 'image folders: training crop size', int(8), 224)
  .option('--out <dir>', 'output directory (default: runs/<model>-<data>)')
  .option('--resume', 'continue from <out>/checkpoint.safetensors', false)
  .option('--seed <n>', 'random seed (initialisation, shuffling, augmentation)', int(0), 0)
  .option('--limit-train <n>', 'use only the first n training images', int(1))
  .option('--limit-test <n>', 'use only the first n test images', int(1))
  .option('--log-every <n>', 'steps per point of the loss curve', int(1), 50)
  .option('--nproc-per-node <n>', 'data-parallel: launch n local processes (batch size is per process; CPU threads are shared out)', int(1), 1)
  .addOption(new Option('--backend <name>', 'data-parallel process-group backend (default: nccl with --device cuda, gloo on CPU)').choices(['gloo', 'nccl']))
  .option('--master-port <port>', 'data-parallel: rendezvous port for --nproc-per-node (default: a free port)', int(1))
  .option('--dist-timeout <s>', 'data-parallel: seconds a collective may wait for a peer before failing', int(1), 300)
  .option('--sync-bn', 'data-parallel: BatchNorm statistics over the global batch (SyncBatchNorm)', false)
  .option('--quiet', 'no progress output', false)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  .showHelpAfterError('(run with --help for all flags)');

type Flags = {
  model: string; data: string; dataDir?: string; epochs: number; batchSize: number; evalBatchSize: number; optimizer: 'sgd' | 'adamw';
  lr: number; momentum: number; nesterov: boolean; schedule: 'cosine' | 'multistep' | 'onecycle' | 'constant'; milestones?: number[];
  warmup: number; wd: number; wdAll: boolean; labelSmoothing: number; clipGrad?: number; augment: string; cropPadding: number;
  device: 'cpu' | 'cuda'; amp?: 'bf16' | 'fp16'; channelsLast: boolean; workers: number; threads: number; imageSize: number;
  out?: string; resume: boolean; seed: number; limitTrain?: number; limitTest?: number; logEvery: number; quiet: boolean;
  nprocPerNode: number; backend?: 'gloo' | 'nccl'; masterPort?: number; distTimeout: number; syncBn: boolean;
};

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
  if (f.nesterov && f.optimizer !== 'sgd') usage('--nesterov applies only to --optimizer sgd');
  if (f.milestones && f.schedule !== 'multistep') usage('--milestones applies only to --schedule multistep');
  if (f.device === 'cuda' && !cuda.isAvailable()) usage('--device cuda: no CUDA device is available');
  if (f.wd > 1) usage(`--wd ${f.wd} is implausibly large (expected e.g. 5e-4)`);
  if (f.labelSmoothing >= 1) usage('--label-smoothing must be < 1');
  if (f.backend === 'nccl' && f.device !== 'cuda') usage('--backend nccl needs --device cuda');
  if (f.device === 'cuda' && f.nprocPerNode > cuda.deviceCount()) usage(`--nproc-per-node ${f.nprocPerNode}: only ${cuda.deviceCount()} CUDA device(s)`);
  return f;
}

interface Datasets {
  train: BatchSource;
  test: BatchSource;
  classes: number;
  channels: number;
  mean: readonly number[];
  std: readonly number[];
  size: number;
}

function arrays(trainSet: ArrayDataset, testSet: ArrayDataset, f: Flags): Datasets {
  const tr = data.limit(trainSet, f.limitTrain);
  const te = data.limit(testSet, f.limitTest);
  return { train: data.arraySource(tr), test: data.arraySource(te), classes: tr.classes.length, channels: tr.shape[0], mean: tr.mean, std: tr.std, size: tr.shape[1] };
}

function loadData(f: Flags): Datasets {
  const dir = f.dataDir;
  const needDir = (): string => dir ?? usage(`--data ${f.data} needs --data-dir <dir>`);
  switch (f.data) {
    case 'fashion-mnist':
      return arrays(data.loadFashionMnist('train', dir), data.loadFashionMnist('test', dir), f);
    case 'mnist':
      return arrays(data.loadMnist('train', needDir()), data.loadMnist('test', needDir()), f);
    case 'cifar10':
      return arrays(data.loadCifar10('train', needDir()), data.loadCifar10('test', needDir()), f);
    case 'cifar100':
      return arrays(data.loadCifar100('train', needDir()), data.loadCifar100('test', needDir()), f);
    default: {
      if (!existsSync(f.data) || !statSync(f.data).isDirectory()) usage(`--data '${f.data}' is neither a known dataset (fashion-mnist, mnist, cifar10, cifar100) nor a folder`);
      const trainDir = existsSync(join(f.data, 'train')) ? join(f.data, 'train') : f.data;
      const testDir = existsSync(join(f.data, 'val')) ? join(f.data, 'val') : existsSync(join(f.data, 'test')) ? join(f.data, 'test') : trainDir;
      const stored = Math.round(f.imageSize / 0.875);
      const tr = data.folderSource(trainDir, stored);
      const te = data.folderSource(testDir, stored, { sameClassesAs: { dir: trainDir, classes: tr.classes } });
      const lim = (s: BatchSource, n?: number): BatchSource => (n && n < s.length ? { length: n, load: (i) => s.load(i) } : s);
      return { train: lim(tr, f.limitTrain), test: lim(te, f.limitTest), classes: tr.classes.length, channels: 3, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], size: f.imageSize };
    }
  }
}

function trainTransform(f: Flags, d: Datasets, folder: boolean): Transform {
  const steps: Transform[] = [];
  if (folder) steps.push(data.randomResizedCrop(d.size));
  else if (f.augment === 'crop-flip' || f.augment === 'crop') steps.push(data.randomCrop(d.size, f.cropPadding));
  if (f.augment === 'crop-flip' || f.augment === 'flip' || folder) steps.push(data.randomHorizontalFlip());
  steps.push(data.normalize(d.mean, d.std));
  return data.compose(...steps);
}

function schedule(f: Flags, stepsPerEpoch: number): { lr: LrFn; momentum?: (s: number) => number } {
  const total = f.epochs * stepsPerEpoch;
  const warm = Math.min(Math.round(f.warmup * stepsPerEpoch), total - 1);
  switch (f.schedule) {
    case 'onecycle':
      return optim.oneCycle(total, { maxMomentum: f.optimizer === 'sgd' ? Math.max(f.momentum, 0.85) : 0.95 });
    case 'multistep': {
      const ms = f.milestones ?? [Math.round(f.epochs * 0.5), Math.round(f.epochs * 0.75)];
      return { lr: optim.warmup(warm, optim.multiStep(ms.map((e) => e * stepsPerEpoch - warm)), 0.1) };
    }
    case 'constant':
      return { lr: optim.warmup(warm, optim.constant(), 0.1) };
    default:
      return { lr: optim.warmup(warm, optim.cosine(total - warm), 0.1) };
  }
}

/** A free TCP port on the loopback interface, for the rendezvous of local ranks. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * --nproc-per-node N: runs this script N times with torchrun's variables (RANK, LOCAL_RANK,
 * WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and waits. The ranks run in their own process group, so
 * each Ctrl-C (or SIGINT/SIGTERM sent to the launcher) reaches each rank exactly once, forwarded
 * from here; if one rank fails the others are stopped and its exit code is returned.
 */
async function launch(f: Flags): Promise<number> {
  const n = f.nprocPerNode;
  const port = f.masterPort ?? (await freePort());
  const argv = process.argv.slice(2);
  const given = (flag: string): boolean => argv.some((a) => a === flag || a.startsWith(`${flag}=`));
  const extra = given('--threads') ? [] : ['--threads', String(Math.max(1, Math.floor(f.threads / n)))];
  if (!f.quiet) console.log(`launching ${n} ranks (MASTER_ADDR=127.0.0.1 MASTER_PORT=${port}, backend ${f.backend ?? (f.device === 'cuda' ? 'nccl' : 'gloo')})`);
  const children: ChildProcess[] = [];
  const codes = await new Promise<(number | null)[]>((resolve) => {
    const result: (number | null)[] = new Array(n).fill(undefined);
    let left = n;
    for (let r = 0; r < n; r++) {
      const env = { ...process.env, RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: String(n), LOCAL_WORLD_SIZE: String(n), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...argv, ...extra], { env, stdio: 'inherit', detached: true });
      children.push(child);
      child.on('exit', (code, signal) => {
        result[r] = code ?? (signal ? 128 + 9 : 1);
        if (code !== 0 && code !== EXIT_INTERRUPTED) for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
        if (--left === 0) resolve(result);
      });
    }
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, () => {
        for (const c of children) if (c.exitCode === null) c.kill(sig);
      });
    }
  });
  const bad = codes.find((c) => c !== 0 && c !== EXIT_INTERRUPTED);
  if (bad !== undefined) return bad ?? 1;
  return codes.includes(EXIT_INTERRUPTED) ? EXIT_INTERRUPTED : 0;
}

async function main(): Promise<void> {
  const f = parseFlags();
  const denv = dist.envFromTorchrun();
  if (f.nprocPerNode > 1 && !denv) process.exit(await launch(f));
  process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, f.workers));
  setNumThreads(f.threads);
  const rank = denv?.rank ?? 0;
  const world = denv?.worldSize ?? 1;
  if (denv && world > 1) {
    dist.init(denv, { backend: f.backend ?? (f.device === 'cuda' ? 'nccl' : 'gloo'), timeoutMs: f.distTimeout * 1000 });
  }
  if (rank !== 0) f.quiet = true;
  const device: Device = f.device === 'cuda' && denv ? (`cuda:${denv.localRank}` as Device) : f.device;
  const out = f.out ?? join('runs', `${f.model}-${f.data.replace(/[^\w.-]+/g, '_')}`);
  let model;
  const folder = !['fashion-mnist', 'mnist', 'cifar10', 'cifar100'].includes(f.data);
  const d = loadData(f);
  manualSeed(f.seed);
  try {
    model = models.create(f.model, { inChannels: d.channels, numClasses: d.classes } as ModelOptions);
  } catch (e) {
    usage(`--model: ${(e as Error).message}`);
  }
  if (models.family(f.model) === 'imagenet' && d.channels !== 3) usage(`--model ${f.model} expects 3-channel images; use a CIFAR-family model (e.g. resnet20) for ${f.data}`);
  model.to(device);
  const named = model.namedParameters();
  const groups = f.wdAll ? [{ params: named.map(([, p]) => p) }] : optim.noDecayOnNormAndBias(named, f.wd);
  const optimizer = f.optimizer === 'sgd'
    ? new optim.SGD(groups, { lr: f.lr, momentum: f.momentum, nesterov: f.nesterov, weightDecay: f.wd })
    : new optim.AdamW(groups, { lr: f.lr, weightDecay: f.wd });
  const common = { device, channelsLast: f.channelsLast, prefetch: f.workers, seed: f.seed };
  const shard = (pad: boolean) => (world > 1 ? { shard: { rank, worldSize: world, pad } } : {});
  const trainLoader = new data.DataLoader(d.train, { ...common, ...shard(true), batchSize: f.batchSize, shuffle: true, dropLast: d.train.length / world > f.batchSize, transform: trainTransform(f, d, folder) });
  const testTransform = folder ? data.compose(data.centerCrop(d.size), data.normalize(d.mean, d.std)) : data.normalize(d.mean, d.std);
  const testLoader = new data.DataLoader(d.test, { ...common, ...shard(false), batchSize: f.evalBatchSize, transform: testTransform });
  // Replicas take rank 0's parameters and buffers here (a collective: every rank reaches it).
  if (world > 1 && f.syncBn) dist.convertSyncBatchNorm(model);
  const ddp = world > 1 ? new dist.DistributedDataParallel(model) : undefined;
  const s = schedule(f, trainLoader.numBatches);
  const scheduler = new optim.LRScheduler(optimizer, s.lr, s.momentum);

  let interrupts = 0;
  process.on('SIGINT', () => {
    if (++interrupts > 1) {
      process.stderr.write('\ninterrupted again: exiting now without saving\n');
      process.exit(EXIT_INTERRUPTED);
    }
    process.stderr.write('\ninterrupt: saving a checkpoint after this step (Ctrl-C again to exit at once)\n');
  });
  const resuming = f.resume && existsSync(join(out, 'checkpoint.safetensors'));
  if (f.resume && !resuming) console.log(`no checkpoint in ${out}; starting from scratch`);
  if (!f.quiet) {
    console.log(`training ${f.model} on ${f.data} (${d.train.length} train / ${d.test.length} test images) for ${f.epochs} epochs on ${device}` +
      `${world > 1 ? ` × ${world} ranks` : ''}, ` +
      `${f.threads} threads, batch ${f.batchSize}, ${f.optimizer} lr ${f.lr} ${f.schedule}, wd ${f.wd}; writing ${out}${resuming ? ' (resuming)' : ''}`);
  }
  try {
    const { summary, interrupted } = await train.fit({
      model, optimizer, scheduler, trainLoader, testLoader, epochs: f.epochs, outDir: out, resume: resuming,
      labelSmoothing: f.labelSmoothing, clipGradNorm: f.clipGrad, amp: f.amp, device, modelName: f.model,
      config: { ...f }, logEvery: f.logEvery, quiet: f.quiet, shouldStop: () => interrupts > 0, ddp,
    });
    if (world > 1) dist.destroy();
    if (interrupted) process.exit(EXIT_INTERRUPTED);
    if (!f.quiet) {
      console.log(`test accuracy ${(100 * (summary.testAccuracy as number)).toFixed(2)}% (best ${(100 * (summary.bestTestAccuracy as number)).toFixed(2)}% at epoch ${summary.bestEpoch}) in ${summary.wallTime}s`);
      console.log(`wrote ${join(out, 'summary.json')}, ${join(out, 'metrics.jsonl')}, ${join(out, 'report.html')}`);
    }
  } catch (e) {
    if (e instanceof train.NonFiniteLossError) {
      console.error(`train: ${e.message}`);
      process.exit(1);
    }
    throw e;
  }
}

main().catch((e: Error) => {
  console.error(`train: ${e.message}`);
  process.exit(1);
});
