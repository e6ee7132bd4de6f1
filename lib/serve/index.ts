// serve: the HTTP classification server behind `resnet-ts serve` (dynamic batching, page, metrics).
export { ClassifyServer, createClassifyServer, type ServerOptions } from './server.ts';
export { Batcher, QueueFullError, type BatcherOptions, type BatchRunner } from './batcher.ts';
export { HttpError } from './decode.ts';
