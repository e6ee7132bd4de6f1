// The HTTP server behind `resnet-ts serve`, on Node's http module: POST /v1/classify with dynamic batching
// into an inference session, the page, /healthz and /metrics. Bad input is a 4xx JSON error and the
// server keeps serving; close() stops accepting, finishes what it received, then ends the session.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DecodedImage } from '../data/index.ts';
import type { Explanation, InferenceSession, Prediction } from '../inference/index.ts';
import { Batcher, QueueFullError } from './batcher.ts';
import { readBody, uploads } from './body.ts';
import { HttpError, decode, probe } from './decode.ts';
import { ServeMetrics } from './metrics.ts';
import { PAGE_CSP, page } from './page.ts';

/** Settings of a ClassifyServer. */
export interface ServerOptions {
  /** Runs the batches; closed by close() unless keepSession. */
  session: InferenceSession;
  /** The model name answered in every response. */
  model: string;
  /** The model's class count; ?k= above it is a 400 (default: not checked beyond 1000). */
  numClasses?: number;
  /** Largest batch (default: the session's maxBatch). */
  maxBatch?: number;
  /** How long the oldest request waits for others to join its batch (default 5 ms). */
  maxDelayMs?: number;
  /** Images that may wait for a batch before requests get 503 (default 256). */
  queue?: number;
  /** Largest request body in bytes (default 20 MiB). */
  maxBody?: number;
  /** Largest image in pixels, checked from its header before decoding (default 40 M). */
  maxPixels?: number;
  /** Decoded pixels held at once, in bytes, before requests get 503 (default 1 GiB). */
  maxDecodedBytes?: number;
  keepSession?: boolean;
}

const ROUTES: Record<string, string[]> = { '/': ['GET', 'HEAD'], '/healthz': ['GET', 'HEAD'], '/metrics': ['GET', 'HEAD'], '/v1/classify': ['POST'], '/v1/explain': ['POST'] };
const RETRY_AFTER_S = '1';

/** One serving endpoint: an http.Server with its batcher and metrics. */
export class ClassifyServer {
  /** Node's http.Server underneath (private: the published types carry no Node types). */
  private readonly http: Server;
  readonly metrics: ServeMetrics;
  readonly batcher: Batcher;
  private readonly o: Required<Omit<ServerOptions, 'numClasses'>> & { numClasses?: number };
  private inFlight = 0;
  private explaining = 0;
  private decodedBytes = 0;
  private closing: Promise<void> | undefined;
  private quiet: (() => void)[] = [];

  constructor(options: ServerOptions) {
    const s = options.session;
    this.o = {
      maxBatch: s.maxBatch, maxDelayMs: 5, queue: 256, maxBody: 20 * 2 ** 20, maxPixels: 40e6, maxDecodedBytes: 2 ** 30, keepSession: false,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)), session: s, model: options.model,
    };
    this.metrics = new ServeMetrics({ queueDepth: () => this.batcher.depth, inFlightRequests: () => this.inFlight, decodedBytes: () => this.decodedBytes });
    this.batcher = new Batcher((images, k) => s.classify(images, { k }), {
      maxBatch: this.o.maxBatch, maxDelayMs: this.o.maxDelayMs, capacity: this.o.queue, concurrency: s.workers,
      onBatch: (n) => this.metrics.batchSize.observe(n),
      onBatchDone: (n, ms) => this.metrics.batchDone(n, ms),
    });
    this.http = createServer((req, res) => void this.handle(req, res));
  }

  /** Starts listening (host 127.0.0.1 unless given); resolves with the address. */
  listen(port: number, host = '127.0.0.1'): Promise<{ host: string; port: number; url: string }> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        const a = this.http.address() as AddressInfo;
        const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        resolve({ host: a.address, port: a.port, url: `http://${h}:${a.port}/` });
      });
    });
  }

  /** Graceful stop: refuses new connections and requests, answers those received, then closes the session. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
      this.http.closeIdleConnections();
      this.batcher.flush();
      if (this.inFlight) await new Promise<void>((resolve) => this.quiet.push(resolve));
      await this.batcher.drained();
      this.http.closeIdleConnections();
      // A connection still sending a request's head when closing began would hold close() until its timeout.
      const straggler = setTimeout(() => this.http.closeAllConnections(), 2000);
      await closed;
      clearTimeout(straggler);
      if (!this.o.keepSession) await this.o.session.close();
    })();
    return this.closing;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = Object.hasOwn(ROUTES, url.pathname) ? url.pathname : 'other';
    let status = 500;
    try {
      if (route === 'other') throw new HttpError(404, `no route ${url.pathname}; try POST /v1/classify, POST /v1/explain, GET /, /healthz or /metrics`);
      if (!ROUTES[route]!.includes(req.method ?? '')) {
        throw new HttpError(405, `${req.method} is not allowed on ${route}; use ${ROUTES[route]!.join(' or ')}`, { allow: ROUTES[route]!.join(', ') });
      }
      if (this.closing) throw new HttpError(503, 'the server is shutting down', { 'retry-after': RETRY_AFTER_S, connection: 'close' });
      status = 200;
      if (route === '/') return this.send(res, 200, page(this.o.model), { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': PAGE_CSP });
      if (route === '/healthz') {
        const broken = this.o.session.error;
        const health = broken ? { status: 'failed', model: this.o.model, error: broken.message } : { status: 'ok', model: this.o.model, queue: this.batcher.depth };
        return this.send(res, broken ? 503 : 200, JSON.stringify(health), { 'content-type': 'application/json' });
      }
      if (route === '/metrics') return this.send(res, 200, await this.metrics.registry.metrics(), { 'content-type': this.metrics.registry.contentType });
      if (route === '/v1/explain') {
        const cam = await this.explain(req, url);
        return this.send(res, 200, cam.png, {
          'content-type': 'image/png', 'x-class-index': String(cam.index), 'x-class-label': encodeURIComponent(cam.label), 'x-cam-size': String(cam.size),
        });
      }
      const body = await this.classify(req, url, t0);
      return this.send(res, 200, JSON.stringify(body), { 'content-type': 'application/json' });
    } catch (e) {
      const err = e instanceof HttpError ? e : new HttpError(500, `internal error: ${(e as Error)?.message ?? String(e)}`);
      status = err.status;
      if (status === 413) err.headers.connection = 'close';
      this.send(res, status, JSON.stringify({ error: err.message }), { 'content-type': 'application/json', ...err.headers });
    } finally {
      this.metrics.requests.inc({ code: String(status), route });
      this.metrics.latency.observe({ route }, (performance.now() - t0) / 1000);
    }
  }

  private async classify(req: IncomingMessage, url: URL, t0: number): Promise<object> {
    const k = this.topK(url.searchParams.get('k'));
    this.inFlight++;
    let held = 0;
    try {
      const files = await uploads(await readBody(req, this.o.maxBody), req.headers['content-type']);
      const what = (i: number): string => (files.length > 1 || files[0]!.name !== 'body' ? `file ${i + 1} (${files[i]!.name})` : 'the body');
      const sizes = await Promise.all(files.map((f, i) => probe(f.bytes, this.o.maxPixels, what(i))));
      if (this.batcher.depth + files.length > this.o.queue) throw busy(`the queue is full (${this.batcher.depth} of ${this.o.queue} images waiting)`);
      held = sizes.reduce((s, { width, height }) => s + width * height * 3, 0);
      if (this.decodedBytes + held > this.o.maxDecodedBytes && this.decodedBytes > 0) {
        held = 0;
        throw busy('too many decoded pixels are held; try again shortly');
      }
      this.decodedBytes += held;
      const images: DecodedImage[] = await Promise.all(files.map((f, i) => decode(f.bytes, what(i))));
      let top: Prediction[][];
      try {
        top = await this.batcher.submit(images, k);
      } catch (e) {
        throw e instanceof QueueFullError ? busy(e.message) : e;
      }
      const ms = Math.round((performance.now() - t0) * 100) / 100;
      if (files[0]!.name === 'body' && files.length === 1) return { model: this.o.model, predictions: top[0], ms };
      return { model: this.o.model, predictions: top[0], results: files.map((f, i) => ({ file: f.name, predictions: top[i] })), ms };
    } finally {
      this.decodedBytes -= held;
      if (--this.inFlight === 0) for (const f of this.quiet.splice(0)) f();
    }
  }

  // A Grad-CAM needs a backward, so it does not join the classify batches: it goes to the session as a job of its own.
  private async explain(req: IncomingMessage, url: URL): Promise<Explanation> {
    const raw = url.searchParams.get('class');
    const max = this.o.numClasses ?? 1000;
    if (raw !== null && (!/^\d+$/.test(raw) || Number(raw) >= max)) throw new HttpError(400, `class must be an integer from 0 to ${max - 1}; got ${JSON.stringify(raw)}`);
    this.inFlight++;
    let held = 0;
    try {
      const files = await uploads(await readBody(req, this.o.maxBody), req.headers['content-type']);
      if (files.length !== 1) throw new HttpError(400, `explain takes one image; got ${files.length}`);
      const what = files[0]!.name === 'body' ? 'the body' : `file 1 (${files[0]!.name})`;
      const { width, height } = await probe(files[0]!.bytes, this.o.maxPixels, what);
      if (this.explaining + this.batcher.depth >= this.o.queue) throw busy(`the queue is full (${this.batcher.depth + this.explaining} of ${this.o.queue} images waiting)`);
      held = width * height * 3;
      if (this.decodedBytes + held > this.o.maxDecodedBytes && this.decodedBytes > 0) {
        held = 0;
        throw busy('too many decoded pixels are held; try again shortly');
      }
      this.decodedBytes += held;
      const image = await decode(files[0]!.bytes, what);
      this.explaining++;
      try {
        return await this.o.session.explain(image, { classIndex: raw === null ? undefined : Number(raw) });
      } catch (e) {
        throw e instanceof RangeError ? new HttpError(400, e.message) : e;
      } finally {
        this.explaining--;
      }
    } finally {
      this.decodedBytes -= held;
      if (--this.inFlight === 0) for (const f of this.quiet.splice(0)) f();
    }
  }

  // While closing, every response ends its connection, so no keep-alive client holds the server open.
  private send(res: ServerResponse, status: number, body: string | Uint8Array, headers: Record<string, string>): void {
    if (res.headersSent) return;
    res.writeHead(status, { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers, ...(this.closing ? { connection: 'close' } : {}) });
    res.end(body);
  }

  private topK(raw: string | null): number {
    if (raw === null) return 5;
    const k = Number(raw);
    const max = this.o.numClasses ?? 1000;
    if (!/^\d+$/.test(raw) || k < 1 || k > max) throw new HttpError(400, `k must be an integer from 1 to ${max}; got ${JSON.stringify(raw)}`);
    return k;
  }
}

const busy = (message: string): HttpError => new HttpError(503, message, { 'retry-after': RETRY_AFTER_S });

/** A server for a session (call listen() to start it). */
export function createClassifyServer(options: ServerOptions): ClassifyServer {
  return new ClassifyServer(options);
}
