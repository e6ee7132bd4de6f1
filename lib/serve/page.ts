// GET / : one self-contained page (no CDN, works offline): drop or pick an image, see it with its top-5
// classes as bars and the Grad-CAM of the top class beside it (click a class for its own). Its script and
// style are inline and allowed by hash in the Content-Security-Policy.
import { createHash } from 'node:crypto';

const STYLE = `
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
main { max-width: 760px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.3rem; margin: 0 0 1rem; } h1 small { color: #667; font-weight: normal; }
#drop { border: 2px dashed #9aa3b5; border-radius: 10px; padding: 1.5rem; text-align: center; background: #fff; cursor: pointer; }
#drop.over { border-color: #3b6fe0; background: #eef3ff; }
#result { display: flex; gap: 1.5rem; margin-top: 1.5rem; align-items: flex-start; }
#preview, #cam { max-width: 220px; max-height: 220px; border-radius: 8px; display: none; }
figure { margin: 0; } figcaption { color: #667; font-size: .85rem; text-align: center; }
#predictions li { cursor: pointer; } #predictions li.explained .label { font-weight: 600; }
#predictions { list-style: none; padding: 0; margin: 0; flex: 1; }
#predictions li { display: grid; grid-template-columns: 1fr 4.5rem; gap: .2rem .6rem; margin-bottom: .6rem; }
.bar { grid-column: 1 / 3; height: 10px; background: #e3e7ef; border-radius: 5px; overflow: hidden; }
.bar i { display: block; height: 100%; background: #3b6fe0; }
.prob { text-align: right; font-variant-numeric: tabular-nums; }
#status { color: #667; margin-top: .8rem; min-height: 1.2em; } #status.error { color: #b3261e; }
`;

const SCRIPT = `
const drop = document.getElementById('drop'), input = document.getElementById('file');
const preview = document.getElementById('preview'), list = document.getElementById('predictions'), status = document.getElementById('status');
const cam = document.getElementById('cam'), caption = document.getElementById('cam-caption');
let current = null;
function show(msg, error) { status.textContent = msg; status.className = error ? 'error' : ''; }
async function explain(index) {
  if (!current) return;
  caption.textContent = 'Grad-CAM ...';
  const res = await fetch('v1/explain?class=' + index, { method: 'POST', body: current, headers: { 'content-type': current.type || 'application/octet-stream' } });
  if (!res.ok) { caption.textContent = ''; const body = await res.json(); return show(body.error || res.statusText, true); }
  const label = decodeURIComponent(res.headers.get('x-class-label') || '');
  cam.src = URL.createObjectURL(await res.blob()); cam.style.display = 'block'; cam.dataset.index = res.headers.get('x-class-index');
  caption.textContent = 'Grad-CAM: ' + label;
  for (const li of list.children) li.classList.toggle('explained', li.dataset.index === cam.dataset.index);
}
async function classify(file) {
  if (!file) return;
  current = file;
  preview.src = URL.createObjectURL(file); preview.style.display = 'block';
  cam.style.display = 'none'; caption.textContent = '';
  list.replaceChildren(); show('classifying ' + file.name + ' ...');
  try {
    const res = await fetch('v1/classify?k=5', { method: 'POST', body: file, headers: { 'content-type': file.type || 'application/octet-stream' } });
    const body = await res.json();
    if (!res.ok) return show(body.error || res.statusText, true);
    for (const p of body.predictions) {
      const li = document.createElement('li');
      const label = document.createElement('span'); label.className = 'label'; label.textContent = p.label;
      const prob = document.createElement('span'); prob.className = 'prob'; prob.textContent = (100 * p.probability).toFixed(2) + ' %';
      const bar = document.createElement('span'); bar.className = 'bar';
      const fill = document.createElement('i'); fill.style.width = (100 * p.probability).toFixed(2) + '%'; bar.append(fill);
      li.dataset.index = p.index; li.append(label, prob, bar); list.append(li);
      li.addEventListener('click', () => explain(p.index).catch((e) => show(String(e), true)));
    }
    show(body.model + ' · ' + body.ms.toFixed(1) + ' ms');
    await explain(body.predictions[0].index);
  } catch (e) { show(String(e), true); }
}
drop.addEventListener('click', () => input.click());
input.addEventListener('change', () => classify(input.files[0]));
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); classify(e.dataTransfer.files[0]); });
`;

const hash = (s: string): string => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

/** The Content-Security-Policy that admits exactly the page's inline script and style. */
export const PAGE_CSP = `default-src 'none'; script-src ${hash(SCRIPT)}; style-src ${hash(STYLE)}; img-src blob:; connect-src 'self'; base-uri 'none'; form-action 'none'`;

const escape = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The page for a model name. */
export function page(model: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(model)} · resnet-ts serve</title><style>${STYLE}</style></head>
<body><main>
<h1>resnet-ts serve <small>${escape(model)}</small></h1>
<div id="drop">Drop an image here, or click to pick one (JPEG, PNG, WebP)<input id="file" type="file" accept="image/jpeg,image/png,image/webp" hidden></div>
<div id="status"></div>
<div id="result"><img id="preview" alt="the image sent"><figure><img id="cam" alt="Grad-CAM of the class"><figcaption id="cam-caption"></figcaption></figure><ol id="predictions"></ol></div>
</main><script>${SCRIPT}</script></body></html>
`;
}
