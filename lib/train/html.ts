// What the HTML reports (a run's report.html, an experiment's) share: Chart.js's UMD bundle, inlined so a
// page is one self-contained file that opens without network access, and escaping for text and data.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

let chartJs: string | undefined;
/** Chart.js's UMD bundle, for a <script> element. */
export function chartBundle(): string {
  chartJs ??= readFileSync(join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.js'), 'utf8');
  return chartJs;
}

/** JSON safe inside a <script> element. */
export const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/</g, '\\u003c');

/** Text safe inside HTML elements and attribute values. */
export const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
