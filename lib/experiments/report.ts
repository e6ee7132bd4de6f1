// An experiment's outputs: table.md (one row a run) and report.html — every run's training error (thin,
// dashed) and test error (bold) against the epoch on one chart, as the papers draw them; one
// self-contained page. Each file is replaced atomically.
import { join } from 'node:path';
import { writeFileAtomically } from '../io/atomic.ts';
import { chartBundle, esc, scriptJson } from '../train/html.ts';
import { seedRange, type RunResult } from './catalog.ts';
import type { ExperimentResults } from './run.ts';

/** Line colours, one a run (matplotlib's tab10, distinct from each other and from the greys of the axes). */
export const PALETTE: readonly (readonly [number, number, number])[] = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
];
const rgb = (i: number, alpha = 1): string => (alpha === 1 ? `rgb(${PALETTE[i % PALETTE.length]!.join(', ')})` : `rgba(${PALETTE[i % PALETTE.length]!.join(', ')}, ${alpha})`);

const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
const verdict = (r: boolean | null): string => (r === true ? 'reproduced' : r === false ? 'not reproduced' : 'partly reproduced');

/** An error cell: the value, or with several seeds the mean and the range (least–greatest). */
const errorCell = (r: RunResult, which: 'trainError' | 'testError'): string => {
  if (r.seeds.length < 2) return pct(r[which]);
  const [lo, hi] = seedRange(r, which);
  return `${pct(r[which])} (${(100 * lo).toFixed(2)}–${(100 * hi).toFixed(2)})`;
};

/** The table's cells: run, net, params, mult-adds, train error, test error (mean and range with several seeds), time (all seeds). */
export function tableRows(res: ExperimentResults): string[][] {
  return res.runs.map((r) => [
    r.label, r.model, r.params.toLocaleString('en-US'), `${(r.multAdds / 1e6).toFixed(2)} M`, errorCell(r, 'trainError'), errorCell(r, 'testError'), `${Math.round(r.wallTime)} s`,
  ]);
}

/** The seeds in words: 'seed 0' or 'seeds 0, 1 (mean and range shown; time is over all seeds)'. */
const seedText = (res: ExperimentResults): string =>
  (res.seeds.length > 1 ? `seeds ${res.seeds.join(', ')} (errors are the mean over the seeds with the range in brackets; time is the sum over them)` : `seed ${res.seeds[0]}`);
const HEAD = ['run', 'net', 'params', 'mult-adds', 'train error', 'test error', 'time'];

/** table.md: the runs' table, then the finding, the paper's claim and the recipe. */
export function tableMarkdown(res: ExperimentResults): string {
  const cell = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `# ${res.experiment}: ${res.title}`,
    '',
    `${res.scale} scale, ${res.data}, ${res.hardware}, ${res.date.slice(0, 10)}`,
    '',
    `| ${HEAD.join(' | ')} |`,
    `|${HEAD.map((_, i) => (i >= 2 ? '--:' : '---')).join('|')}|`,
    ...tableRows(res).map((row) => `| ${row.map(cell).join(' | ')} |`),
    '',
    `Finding (${verdict(res.finding.reproduced)}): ${res.finding.text}`,
    '',
    `Paper: ${res.paper}`,
    '',
    `Recipe: ${res.recipeText}; ${seedText(res)}. Train error is the running error over the last epoch; total time ${Math.round(res.wallTime)} s.`,
    '',
  ].join('\n');
}

/** Writes report.html for an experiment's results. */
export function writeExperimentReport(path: string, res: ExperimentResults): void {
  const pts = (epochs: number[], ys: number[]) => epochs.flatMap((x, i) => (Number.isFinite(ys[i]) ? [{ x, y: 100 * ys[i]! }] : []));
  // With several seeds each curve (the mean) gets a band from the least to the greatest seed: two lines, the second filled to the first.
  const band = (i: number, label: string, lo: number[] | undefined, hi: number[] | undefined, epochs: number[]) => (lo && hi ? [
    { label: `${label} (least)`, data: pts(epochs, lo), borderWidth: 0, pointRadius: 0, fill: false, train: true },
    { label: `${label} (greatest)`, data: pts(epochs, hi), borderWidth: 0, pointRadius: 0, fill: '-1', backgroundColor: rgb(i, 0.13), train: true },
  ] : []);
  const datasets = res.runs.flatMap((r, i) => [
    ...band(i, `${r.label} train`, r.curve.trainMin, r.curve.trainMax, r.curve.epoch),
    ...band(i, `${r.label} test`, r.curve.testMin, r.curve.testMax, r.curve.epoch),
    { label: `${r.label} (train)`, data: pts(r.curve.epoch, r.curve.trainError), borderColor: rgb(i), backgroundColor: rgb(i), borderWidth: 1.5, borderDash: [6, 4], pointRadius: 2, train: true },
    { label: r.label, data: pts(r.curve.epoch, r.curve.testError), borderColor: rgb(i), backgroundColor: rgb(i), borderWidth: 3.5, pointRadius: 3.5, train: false },
  ]);
  const rows = tableRows(res).map((row) => `<tr>${row.map((c, j) => `<td${j >= 2 ? ' class="num"' : ''}>${esc(c)}</td>`).join('')}</tr>`).join('');
  const title = res.title;
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:20px;color:#222;max-width:1000px}h1{font-size:20px;margin:0 0 4px}
.sub{color:#555;margin-bottom:8px}table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}
td.num{text-align:right;white-space:nowrap}th,td:first-child{white-space:nowrap}.finding{margin:8px 0;padding:6px 10px;background:#f4f4f4;border-left:4px solid #888}</style>
<script>${chartBundle()}</script></head>
<body><h1>${esc(title)}</h1>
<div class="sub">${esc(`npm run experiment -- ${res.experiment} --scale ${res.scale} --data ${res.data} · ${res.scale} scale · ${res.data} · ${res.hardware} · ${res.date.slice(0, 10)} · dashed: training error, bold: test error`)}</div>
<canvas id="errors" width="960" height="440"></canvas>
<div class="finding"><b>Finding (${esc(verdict(res.finding.reproduced))}):</b> ${esc(res.finding.text)}</div>
<table><tr>${HEAD.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows}</table>
<p><b>Paper:</b> ${esc(res.paper)}</p>
<p><b>Recipe:</b> ${esc(res.recipeText)}; ${esc(seedText(res))}. Training error is the running error over each epoch${res.seeds.length > 1 ? '; the shaded bands span the seeds' : ''}.</p>
<script>
const datasets = ${scriptJson(datasets)};
new Chart(document.getElementById('errors'), {
  type: 'line',
  data: { datasets },
  options: {
    animation: false, responsive: false,
    scales: { x: { type: 'linear', title: { display: true, text: 'epoch' }, ticks: { stepSize: 1 } }, y: { title: { display: true, text: 'error (%)' } } },
    plugins: { legend: { labels: { filter: (item, data) => !data.datasets[item.datasetIndex].train } } },
  },
});
</script></body></html>
`;
  writeFileAtomically(path, html);
}

/** Writes DIR/<experiment>/results.json, table.md and report.html. */
export function writeExperimentOutputs(dir: string, res: ExperimentResults): { results: string; table: string; report: string } {
  const paths = { results: join(dir, 'results.json'), table: join(dir, 'table.md'), report: join(dir, 'report.html') };
  writeFileAtomically(paths.results, JSON.stringify(res, null, 2) + '\n');
  writeFileAtomically(paths.table, tableMarkdown(res));
  writeExperimentReport(paths.report, res);
  return paths;
}
