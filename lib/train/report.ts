// DIR/report.html: loss and accuracy curves (train and test) drawn by Chart.js, and the summary's
// numbers; one self-contained page, replaced atomically.
import { writeFileAtomically } from '../io/atomic.ts';
import { chartBundle, esc, scriptJson } from './html.ts';
import { checkPath, type EpochRecord, type MetricRecord, type StepRecord } from './metrics.ts';

/** Writes the HTML report for a run's history and summary (its scalar fields become the table). */
export function writeReport(path: string, title: string, history: readonly MetricRecord[], summary: object): void {
  checkPath(path, 'writeReport');
  const epochs = history.filter((r): r is EpochRecord => r.kind === 'epoch');
  const steps = history.filter((r): r is StepRecord => r.kind === 'step');
  const pts = <T>(rs: readonly T[], x: (r: T) => number, y: (r: T) => number | undefined) =>
    rs.flatMap((r) => (y(r) === undefined ? [] : [{ x: x(r), y: y(r)! }]));
  const data = {
    loss: [
      { label: 'train loss (per step window)', data: pts(steps, (r) => r.x, (r) => r.loss), color: 'rgb(54, 162, 235)' },
      { label: 'train loss (epoch)', data: pts(epochs, (r) => r.epoch + 1, (r) => r.trainLoss), color: 'rgb(0, 90, 200)' },
      { label: 'test loss', data: pts(epochs, (r) => r.epoch + 1, (r) => r.testLoss), color: 'rgb(255, 99, 132)' },
    ],
    accuracy: [
      { label: 'train top-1 %', data: pts(epochs, (r) => r.epoch + 1, (r) => 100 * r.trainTop1), color: 'rgb(54, 162, 235)' },
      { label: 'test top-1 %', data: pts(epochs, (r) => r.epoch + 1, (r) => (r.testTop1 === undefined ? undefined : 100 * r.testTop1)), color: 'rgb(255, 99, 132)' },
    ],
  };
  const rows = Object.entries(summary)
    .filter(([, v]) => typeof v !== 'object' || v === null)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(String(v))}</td></tr>`)
    .join('');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}.charts{display:flex;flex-wrap:wrap;gap:24px}
table{border-collapse:collapse;margin-top:16px}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}</style>
<script>${chartBundle()}</script></head>
<body><h1>${esc(title)}</h1>
<div class="charts"><div><h2>Loss</h2><canvas id="loss" width="560" height="360"></canvas></div>
<div><h2>Accuracy</h2><canvas id="accuracy" width="560" height="360"></canvas></div></div>
<table>${rows}</table>
<script>
const data = ${scriptJson(data)};
for (const id of ['loss', 'accuracy']) {
  new Chart(document.getElementById(id), {
    type: 'line',
    data: { datasets: data[id].map((d) => ({ label: d.label, data: d.data, borderColor: d.color, backgroundColor: d.color, borderWidth: 3, pointRadius: 3 })) },
    options: { animation: false, responsive: false, scales: { x: { type: 'linear', title: { display: true, text: 'epoch' } } } },
  });
}
</script></body></html>
`;
  writeFileAtomically(path, html);
}
