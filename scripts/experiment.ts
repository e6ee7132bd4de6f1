// npm run experiment -- <name> [flags]: trains the nets of a paper experiment (degradation, shortcuts,
// cardinality, preact, densenet, or all) with one shared recipe and writes DIR/<name>/report.html, table.md and
// results.json. Finished runs are read back and interrupted ones resume, so rerunning continues;
// Ctrl-C or SIGTERM saves a checkpoint and exits 130 or 143 (a second Ctrl-C exits at once).
import { availableParallelism, cpus } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Argument, Command, CommanderError, Option } from 'commander';
import { commandName, int, ints, stopOnSignals } from './cli.ts';
import { trainInProcesses } from './experiment-jobs.ts';
import { applyWaitPolicy } from './omp-policy.ts';
import type { DataName, Scale } from '../lib/experiments/index.ts';

// OpenMP's wait policy must be chosen before libtorch loads (scripts/omp-policy.ts), hence the dynamic imports.
const ompNote = await applyWaitPolicy();
const { setNumThreads, cuda, data, models } = await import('../lib/index.ts');
const ex = await import('../lib/experiments/index.ts');
type ExperimentOptions = import('../lib/experiments/index.ts').ExperimentOptions;
type ExperimentJob = import('../lib/experiments/index.ts').ExperimentJob;

const EXIT_USAGE = 2;
const NAMES = [...Object.keys(ex.EXPERIMENTS), 'all'];
/** [C, H, W] of each dataset's images (for --plan, which loads no data). */
const SHAPES: Record<DataName, [number, number, number]> = { 'fashion-mnist': [1, 28, 28], cifar10: [3, 32, 32] };

const program = new Command(commandName('experiment'))
  .description('Reproduce a paper experiment: train its nets with one recipe, then write report.html, table.md and results.json.\n' +
    '  degradation  He et al. 2015 Fig. 6: plain-20/56 vs ResNet-20/56\n' +
    '  shortcuts    He et al. 2015 Table 3: shortcut options A, B, C\n' +
    '  cardinality  Xie et al. 2017 Table 3: cardinality 1, 2, 4, 8, 32 at equal mult-adds\n' +
    '  preact       He et al. 2016 Table 3: original vs pre-activation units\n' +
    '  densenet     Huang et al. 2017 sec. 4.3: ResNet vs DenseNet-BC at equal parameter budgets\n' +
    '  transfer     Yosinski et al. 2014: classes 5-9 from 100 images a class, frozen / fine-tuned / from scratch after pretraining on 0-4\n' +
    '  all          all of them, one after another')
  .addArgument(new Argument('<name>', 'experiment').choices(NAMES))
  .addOption(new Option('--scale <scale>', 'quick: minutes on 2 CPU cores; medium: all 60k training images, two seeds (degradation: 65 min on 2 CPU cores with --jobs 2, measured); full: the papers\' schedule, for a GPU').choices(ex.SCALES).default('quick'))
  .addOption(new Option('--data <name>', 'dataset').choices(ex.DATASETS).default('fashion-mnist'))
  .option('--data-dir <dir>', 'where the dataset files are (default for fashion-mnist: Debian\'s /usr/share/datasets/fashion-mnist)')
  .option('--out <dir>', 'output directory: runs go in <out>/<name>/<run>/', join('runs', 'experiments'))
  .option('--seed <n>', 'random seed (initialisation, shuffling, augmentation), the same for every run; medium also trains with seed n+1', int(0), 0)
  .option('--seeds <list>', 'train every net once per seed (comma-separated) and show the mean and range (overrides --seed)', ints)
  .option('--threads <n>', 'CPU threads for tensor ops (shared out among --jobs)', int(1), availableParallelism())
  .option('--jobs <n>', 'train this many runs at once, each in its own process with threads/n CPU threads (on 2 CPU cores, --jobs 2 is ~1.5x faster: these small nets do not keep two threads busy)', int(1), 1)
  .addOption(new Option('--job <run@seed>', 'train only this run with this seed (what each process of --jobs does)').hideHelp())
  .addOption(new Option('--device <device>', 'cpu or cuda').choices(['cpu', 'cuda']).default('cpu'))
  .addOption(new Option('--amp <dtype>', 'mixed precision (on this project\'s AMD EPYC CPU bf16 is slower than fp32 for these small nets)').choices(['bf16', 'fp16']))
  .option('--channels-last', 'channels-last memory format for images and weights (1.15x faster on 2 AMD EPYC cores)', false)
  .option('--epochs <n>', 'override the recipe\'s epochs', int(1))
  .option('--limit-train <n>', 'override the recipe\'s number of training images', int(1))
  .option('--limit-test <n>', 'override the recipe\'s number of test images', int(1))
  .option('--plan', 'print the runs (params, mult-adds) and the recipe, train nothing', false)
  .option('--quiet', 'no progress output', false)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  .showHelpAfterError('(run with --help for all flags)');

type Flags = {
  scale: Scale; data: DataName; dataDir?: string; out: string; seed: number; seeds?: number[]; threads: number; device: 'cpu' | 'cuda';
  epochs?: number; limitTrain?: number; limitTest?: number; plan: boolean; quiet: boolean; amp?: 'bf16' | 'fp16'; channelsLast: boolean;
  jobs: number; job?: string;
};

function usage(message: string): never {
  process.stderr.write(`experiment: ${message}\n`);
  process.exit(EXIT_USAGE);
}

function parse(): { names: string[]; f: Flags } {
  try {
    program.parse(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.code === 'commander.helpDisplayed' || e.code === 'commander.help' ? 0 : EXIT_USAGE);
    throw e;
  }
  const f = program.opts<Flags>();
  if (f.device === 'cuda' && !cuda.isAvailable()) usage('--device cuda: no CUDA device is available');
  if (f.data === 'cifar10' && !f.dataDir && !f.plan) usage('--data cifar10 needs --data-dir <dir> (the binary batches)');
  if (f.seeds && (f.seeds.length === 0 || new Set(f.seeds).size !== f.seeds.length)) usage('--seeds: give distinct seeds, e.g. 0,1');
  if (f.jobs > 1 && f.device === 'cuda') usage('--jobs is for CPU runs (one CUDA device trains one run at a time)');
  if (f.job !== undefined && !/^[\w-]+@\d+$/.test(f.job)) usage(`--job: expected <run>@<seed>, got '${f.job}'`);
  const name = program.args[0]!;
  if (f.job !== undefined && name === 'all') usage('--job needs one experiment, not all');
  return { names: name === 'all' ? Object.keys(ex.EXPERIMENTS) : [name], f };
}

const recipeOf = (name: string, f: Flags) => ({ ...ex.withOverrides(ex.recipeFor(f.scale, f.data, name), f), ...(f.amp ? { amp: f.amp } : {}) });

/** --plan: the runs with their sizes, and the recipe. */
function plan(names: string[], f: Flags): void {
  const [c, h, w] = SHAPES[f.data];
  for (const name of names) {
    const exp = ex.EXPERIMENTS[name]!;
    const rows = exp.runs(f.scale).map((run) => {
      const s = models.summary(ex.buildRun(run, c, run.classes?.length ?? 10), [1, c, h, w], { depth: 0 });
      return { run, params: s.totalParams, multAdds: s.totalMultAdds };
    });
    const macs = rows.map((r) => r.multAdds);
    const r = recipeOf(name, f);
    console.log(`# ${name}: ${exp.title} (${f.scale}, ${f.data} ${c}x${h}x${w})\n`);
    console.log('| run | id | net | params | mult-adds |\n|---|---|---|--:|--:|');
    for (const x of rows) console.log(`| ${x.run.label} | ${x.run.id} | ${x.run.model} | ${x.params} | ${x.multAdds} |`);
    console.log(`\nmult-adds spread (max/min - 1): ${(100 * (Math.max(...macs) / Math.min(...macs) - 1)).toFixed(2)} %`);
    console.log(`recipe: ${ex.describeRecipe(r, r.limitTrain ?? 'all', r.limitTest ?? 'all')}; seeds ${(f.seeds ?? ex.seedsFor(f.scale, f.seed)).join(', ')}\n`);
  }
}

function loadSplits(f: Flags) {
  try {
    if (f.data === 'cifar10') return { train: data.loadCifar10('train', f.dataDir!), test: data.loadCifar10('test', f.dataDir!) };
    return { train: data.loadFashionMnist('train', f.dataDir), test: data.loadFashionMnist('test', f.dataDir) };
  } catch (e) {
    return usage(`cannot load ${f.data}${f.dataDir ? ` from ${f.dataDir}` : ''}: ${(e as Error).message}`);
  }
}

/** The command line of a --jobs child: this experiment, the same recipe flags and seeds, one run, its share of the threads. */
function childArgs(name: string, f: Flags, seeds: number[], threads: number, job: { run: { id: string }; seed: number }): string[] {
  const a = [process.argv[1]!, name, '--job', `${job.run.id}@${job.seed}`, '--scale', f.scale, '--data', f.data, '--out', f.out, '--seeds', seeds.join(','),
    '--threads', String(threads), '--device', f.device, '--quiet'];
  if (f.dataDir) a.push('--data-dir', f.dataDir);
  if (f.amp) a.push('--amp', f.amp);
  if (f.channelsLast) a.push('--channels-last');
  for (const [flag, v] of [['--epochs', f.epochs], ['--limit-train', f.limitTrain], ['--limit-test', f.limitTest]] as const) if (v !== undefined) a.push(flag, String(v));
  return a;
}

async function main(): Promise<void> {
  const { names, f } = parse();
  if (f.plan) return plan(names, f);
  // Each of --jobs N processes gets its share of the threads (a --job child is run with --jobs 1 and that share).
  const perJob = Math.max(1, Math.floor(f.threads / f.jobs));
  setNumThreads(perJob);
  const splits = loadSplits(f);
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  const format = `${f.amp ?? 'fp32'}${f.channelsLast ? ', channels-last' : ''}`;
  const threads = f.jobs > 1 ? `${f.jobs} runs at a time, ${perJob} thread${perJob > 1 ? 's' : ''} each` : `${f.threads} thread${f.threads > 1 ? 's' : ''}`;
  const hardware = f.device === 'cuda' ? `CUDA, ${f.threads} CPU threads, ${format}` : `CPU, ${threads} (${cpu}), ${format}`;
  const stop = stopOnSignals('; rerun the same command to continue');
  const log = (line: string): void => {
    if (!f.quiet) console.log(line);
  };
  if (f.job === undefined) log(ompNote);
  for (const name of names) {
    const exp = ex.EXPERIMENTS[name]!;
    const seeds = f.seeds ?? ex.seedsFor(f.scale, f.seed);
    const options: ExperimentOptions = {
      scale: f.scale, data: f.data, train: splits.train, test: splits.test, recipe: recipeOf(name, f), outDir: f.out, seeds,
      device: f.device, channelsLast: f.channelsLast, hardware, quiet: f.quiet, shouldStop: stop.requested, log,
    };
    if (f.job !== undefined) {
      const [id, seed] = f.job.split('@') as [string, string];
      if (!(await ex.runExperimentJob(exp, options, id, Number(seed)))) process.exit(stop.exitCode());
      return;
    }
    if (f.jobs > 1) {
      const tag = (j: ExperimentJob): string => `[${name}] ${j.run.id}${seeds.length > 1 ? ` seed ${j.seed}` : ''}`;
      const describe = (j: ExperimentJob): string => {
        const s = JSON.parse(readFileSync(join(j.dir, 'summary.json'), 'utf8')) as { testAccuracy: number; trainAccuracy: number; wallTime: number };
        return `train error ${(100 * (1 - s.trainAccuracy)).toFixed(2)} %, test error ${(100 * (1 - s.testAccuracy)).toFixed(2)} %, ${s.wallTime.toFixed(0)} s`;
      };
      options.trainJobs = (pending) => {
        log(`[${name}] training ${pending.length} run${pending.length > 1 ? 's' : ''}, ${f.jobs} at a time (${perJob} thread${perJob > 1 ? 's' : ''} each)`);
        return trainInProcesses(pending, { jobs: f.jobs, args: (j) => childArgs(name, f, seeds, perJob, j), tag, describe, log, stopRequested: stop.requested });
      };
    }
    const res = await ex.runExperiment(exp, options);
    if (!res) process.exit(stop.exitCode());
    const paths = ex.writeExperimentOutputs(join(f.out, name), res);
    log(`\n${ex.tableMarkdown(res)}`);
    log(`wrote ${paths.report}, ${paths.table}, ${paths.results}\n`);
  }
}

main().catch((e: Error) => {
  console.error(`experiment: ${e.message}`);
  process.exit(e instanceof ex.RunMismatchError ? EXIT_USAGE : 1);
});
