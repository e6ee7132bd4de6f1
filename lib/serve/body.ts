// Request bodies under a byte limit, and the images in them: a raw image body, or the files of a
// multipart/form-data form (parsed by Node's built-in fetch Response, so no parser of our own).
import type { IncomingMessage } from 'node:http';
import { HttpError } from './decode.ts';

/** One uploaded file. */
export interface Upload {
  name: string;
  bytes: Buffer;
}

/** The whole body, or a 413 as soon as it passes maxBytes (by Content-Length or while streaming). */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.reject(tooLarge(declared, maxBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > maxBytes) {
        req.off('data', onData);
        req.resume(); // discard the rest; the response closes the connection
        reject(tooLarge(size, maxBytes));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
    req.once('aborted', () => reject(new HttpError(400, 'the request was aborted')));
  });
}

function tooLarge(size: number, max: number): HttpError {
  return new HttpError(413, `the body is over --max-body (${size} > ${max} bytes)`, { connection: 'close' });
}

/** The images of a request: each file of a multipart form, or the body itself. */
export async function uploads(body: Buffer, contentType: string | undefined): Promise<Upload[]> {
  if (!contentType || !/^multipart\/form-data\b/i.test(contentType)) return [{ name: 'body', bytes: body }];
  let form: FormData;
  try {
    form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
  } catch (e) {
    throw new HttpError(400, `cannot parse the multipart/form-data body: ${(e as Error).message}`);
  }
  const files: Upload[] = [];
  for (const [field, v] of form) {
    if (typeof v !== 'string') files.push({ name: v.name || field, bytes: Buffer.from(await v.arrayBuffer()) });
  }
  if (!files.length) throw new HttpError(400, 'the multipart/form-data body holds no file');
  return files;
}
