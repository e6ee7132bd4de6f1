// The paper experiments behind `npm run experiment`: their nets, the shared recipe, running and reporting.
export { EXPERIMENTS, CARDINALITY_WIDTHS, buildRun, seedRange, spearman, type Experiment, type RunSpec, type RunResult, type Finding } from './catalog.ts';
export { recipeFor, seedsFor, withOverrides, describeRecipe, SCALES, DATASETS, type ExperimentRecipe, type Scale, type DataName } from './recipe.ts';
export { runExperiment, runExperimentJob, experimentJobs, jobFinished, RunMismatchError, type ExperimentJob, type ExperimentOptions, type ExperimentResults } from './run.ts';
export { tableMarkdown, tableRows, writeExperimentReport, writeExperimentOutputs, PALETTE } from './report.ts';
