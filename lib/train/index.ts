// The training loop, checkpoints, metrics and the HTML report.
export { fit, evaluate, NonFiniteLossError, type FitOptions, type FitResult, type Amp } from './trainer.ts';
export { saveCheckpoint, loadCheckpoint, hasCheckpoint, type TrainState } from './checkpoint.ts';
export { writeMetrics, appendMetric, Progress, type EpochRecord, type StepRecord, type MetricRecord } from './metrics.ts';
export { writeReport } from './report.ts';
export { ModelEma, type EmaOptions } from './ema.ts';
export { ttaForward, FlipTTA, type TtaMode, type TtaOptions } from './tta.ts';
