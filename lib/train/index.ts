// Training: the recipe and what it builds, the loop and its parts, checkpoints, metrics and the HTML report.
export { buildTraining, buildModel, trainTransform, evalTransform, recipeDifferences, RecipeError, type Recipe, type Training, type TrainingContext } from './recipe.ts';
export { arrayData, folderData, loadTrainingData, loadRecipeData, DATASET_NAMES, type TrainingData, type FolderDataOptions } from './data.ts';
export { fetchWeights, loadRecipeWeights, applyFreeze, parseFreeze, stagesOf, weightsPreset, type FreezeSpec } from './transfer.ts';
export { fit, ResumeMismatchError, type FitOptions, type FitResult } from './trainer.ts';
export { trainEpoch, NonFiniteLossError, type EpochOptions, type EpochEnd, type FitState } from './epoch.ts';
export { eagerStep, type TrainStep, type StepFactory, type StepParts, type StepResult } from './step.ts';
export { graphStep, cudaGraphRefusal, CudaGraphError } from './graph-step.ts';
export { withOomRetry, accumulatingStep, sliceSizes, type OomRetryListener } from './oom-retry.ts';
export { evaluate, topkCorrect, type EvaluateOptions } from './evaluate.ts';
export { RunFiles, runPaths } from './run-files.ts';
export { summarize, type RunSummary, type ConfigValue } from './summary.ts';
export { saveCheckpoint, loadCheckpoint, readCheckpoint, checkpointInfo, checkpointWeights, type CheckpointInfo, type TrainState, type RunState, type Running, type CheckedCheckpoint } from './checkpoint.ts';
export { writeMetrics, readMetrics, appendMetric, Progress, type EpochRecord, type StepRecord, type MetricRecord } from './metrics.ts';
export { writeReport } from './report.ts';
export { ModelEma, type EmaOptions } from './ema.ts';
export { PRESETS, type Preset } from './presets.ts';
export { ttaForward, FlipTTA, type TtaMode, type TtaOptions } from './tta.ts';
export type { Amp } from '../device.ts';
