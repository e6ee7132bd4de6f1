// The server's Prometheus metrics (prom-client): requests by status, latency and batch-size histograms,
// queue depth, images/s over the last 10 s, and Node's process metrics (event-loop delay included).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const WINDOW_MS = 10_000;

/** The metrics of one server, in their own registry. */
export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'code' | 'route'>;
  readonly latency: Histogram<'route'>;
  readonly batchSize: Histogram;
  readonly batchSeconds: Histogram;
  readonly images: Counter;
  private readonly done: Array<[at: number, n: number]> = [];
  private readonly started = performance.now();

  constructor(state: { queueDepth: () => number; inFlightRequests: () => number; decodedBytes: () => number }) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'resnet_ts_http_requests_total', help: 'HTTP requests answered, by status code and route', labelNames: ['code', 'route'], registers });
    this.latency = new Histogram({
      name: 'resnet_ts_http_request_duration_seconds', help: 'Time from request to response, by route', labelNames: ['route'], registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
    this.batchSize = new Histogram({ name: 'resnet_ts_batch_size', help: 'Images per forward (dynamic batching)', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers });
    this.batchSeconds = new Histogram({ name: 'resnet_ts_batch_duration_seconds', help: 'Time of one batch in the inference session', buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
    this.images = new Counter({ name: 'resnet_ts_images_total', help: 'Images classified', registers });
    new Gauge({ name: 'resnet_ts_queue_depth', help: 'Images waiting for a batch', registers, collect() { this.set(state.queueDepth()); } });
    new Gauge({ name: 'resnet_ts_requests_in_flight', help: 'Classify requests received and not yet answered', registers, collect() { this.set(state.inFlightRequests()); } });
    new Gauge({ name: 'resnet_ts_decoded_bytes', help: 'Bytes of decoded images held (budget of --max-decoded-mb)', registers, collect() { this.set(state.decodedBytes()); } });
    const self = this;
    new Gauge({ name: 'resnet_ts_images_per_second', help: 'Images classified per second over the last 10 s', registers, collect() { this.set(self.rate()); } });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Records one finished batch. */
  batchDone(n: number, ms: number): void {
    this.images.inc(n);
    this.batchSeconds.observe(ms / 1000);
    const now = performance.now();
    this.done.push([now, n]);
    while (this.done.length && this.done[0]![0] < now - WINDOW_MS) this.done.shift();
  }

  private rate(): number {
    const now = performance.now();
    const n = this.done.reduce((s, [at, k]) => (at >= now - WINDOW_MS ? s + k : s), 0);
    return n / (Math.min(WINDOW_MS, now - this.started) / 1000);
  }
}
