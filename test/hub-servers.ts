// Loopback HTTP servers for the download tests: Python's http.server over a folder (another tool's server,
// with its own request log), and a small Node server for what http.server cannot do (redirects, broken bodies).
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { visionPython } from './helpers.ts';

/** Python's http.server serving dir on 127.0.0.1; requests() lists the paths it was asked for. */
export interface FileServer {
  url: string;
  requests(): string[];
  close(): void;
}

/** Starts `python3 -m http.server 0 --bind 127.0.0.1 --directory dir` and waits for its port. */
export function pythonFileServer(dir: string): Promise<FileServer> {
  const child: ChildProcess = spawn(visionPython, ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`http.server exited with ${code}: ${log}`)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const port = /port (\d+)/.exec(out)?.[1];
      if (!port) return;
      child.removeAllListeners('exit');
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests: () => [...log.matchAll(/"GET (\S+) HTTP/g)].map((m) => m[1]!),
        close: () => child.kill(),
      });
    });
  });
}

/** A Node server on 127.0.0.1 answering with handler. */
export async function nodeServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
