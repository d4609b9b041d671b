// transferlab studio: the page. Plain JavaScript, no library, nothing from the network but this studio's own API.
// Every name from the folder (classes, files) is put on the page with textContent, never parsed as markup.
'use strict';

const $ = id => document.getElementById(id);
const state = { cls: null, split: 'train', offset: 0, page: 60, classes: [], isSplit: false, runs: [] };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'onclick' || key === 'onchange') node[key] = value; else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function say(text) { $('message').textContent = text || ''; }

async function api(path, options = {}) {
  let response;
  try { response = await fetch(path, options); }
  catch (e) { throw new Error('the studio does not answer: is it still running? (reload the page once it is)'); }
  const type = response.headers.get('content-type') || '';
  const body = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) throw new Error(body.detail || body || response.statusText);
  return body;
}

const post = (path, body) => api(path, { method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body || {}) });

function thumbUrl(path) { return '/api/thumb?path=' + encodeURIComponent(path); }

// --- tabs ------------------------------------------------------------------------------------------------------
for (const button of document.querySelectorAll('#tabs button')) {
  button.onclick = () => show(button.dataset.view);
}
function show(view) {
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.view === view);
  for (const s of document.querySelectorAll('.view')) s.classList.toggle('active', s.id === view);
  say('');
  if (view === 'results' || view === 'try' || view === 'ship') loadRuns();
}

// --- 1 photos ----------------------------------------------------------------------------------------------------
async function loadState() {
  const s = await api('/api/state');
  state.classes = s.classes; state.isSplit = s.split;
  $('folder').textContent = s.folder;
  $('split-button').classList.toggle('hidden', s.split);
  $('split-choice').classList.toggle('hidden', !s.split);
  const list = $('classes'); list.replaceChildren();
  for (const c of s.classes) {
    const counts = Object.entries(c.counts).map(([k, v]) => k === 'all' ? v : `${k} ${v}`).join(', ');
    list.append(el('li', { class: c.name === state.cls ? 'active' : '', onclick: () => openClass(c.name),
      'data-class': c.name }, el('span', { text: c.name }), el('small', { text: ` (${counts})` })));
  }
  loadJournal();
}

async function openClass(name) {
  state.cls = name; state.offset = 0;
  $('class-title').textContent = name; $('add').classList.remove('hidden');
  $('grid').replaceChildren();
  await loadState();
  await morePhotos();
}

async function morePhotos() {
  const q = new URLSearchParams({ cls: state.cls, offset: state.offset, limit: state.page });
  const page = await api('/api/photos?' + q);
  for (const path of page.photos) $('grid').append(photoCard(path));
  state.offset += page.photos.length;
  $('more').classList.toggle('hidden', state.offset >= page.total);
  $('count').textContent = `${state.offset} of ${page.total} shown`;
}
$('more').onclick = morePhotos;

function classChoice(exclude) {
  const select = el('select', {}, el('option', { value: '', text: 'move to...' }));
  for (const c of state.classes) if (c.name !== exclude) select.append(el('option', { value: c.name, text: c.name }));
  return select;
}

function photoCard(path, extra) {
  const parts = path.split('/');
  const cls = state.isSplit ? parts[1] : parts[0];
  const select = classChoice(cls);
  select.onchange = () => select.value && move(path, select.value);
  const card = el('div', { class: 'thumb', 'data-path': path },
    el('img', { src: thumbUrl(path), alt: path, loading: 'lazy' }),
    el('div', { class: 'name', title: path, text: parts[parts.length - 1] }));
  if (extra) card.append(extra);
  card.append(select, el('button', { text: 'set aside', onclick: () => aside(path) }));
  return card;
}

async function move(path, to, reason) {
  try { await post('/api/move', { path, to, reason }); say(`moved ${path} to ${to}`); await refresh(); }
  catch (e) { say(e.message); }
}
async function aside(path, reason) {
  try { await post('/api/aside', { path, reason }); say(`set aside ${path}`); await refresh(); }
  catch (e) { say(e.message); }
}
async function refresh() {
  pollLive();
  if (state.cls) await openClass(state.cls); else await loadState();
  if (state.checked) startCheck(false);  // the findings follow the folder (the doctor's cache makes it quick)
}

async function loadJournal() {
  const { entries } = await api('/api/journal');
  const list = $('journal'); list.replaceChildren();
  for (const e of entries.slice(0, 30)) {
    const item = el('li', { 'data-id': e.id }, el('span', { text: `${e.kind}: ${e.target}${e.reason ? ' (' + e.reason + ')' : ''} ` }));
    if (e.state === 'done' && e.kind !== 'undo') {
      item.append(el('button', { text: 'undo', onclick: async () => {
        try { await post('/api/undo', { id: e.id }); say('undone'); await refresh(); } catch (err) { say(err.message); }
      } }));
    } else item.append(el('small', { text: e.state }));
    list.append(item);
  }
}

$('new-class').onsubmit = async event => {
  event.preventDefault();
  try { await post('/api/classes', { name: $('class-name').value }); const n = $('class-name').value;
    $('class-name').value = ''; await openClass(n); } catch (e) { say(e.message); }
};

$('split-button').onclick = async () => {
  try { const r = await post('/api/split', { val_fraction: 0.2, seed: 0 }); say(`split into ${r.folder}`);
    state.cls = null; $('grid').replaceChildren(); await loadState(); } catch (e) { say(e.message); }
};

async function addFiles(files) {
  for (const file of files) await addBlob(file, file.name);
  await refresh();
}
async function addBlob(blob, name) {
  const form = new FormData();
  form.append('cls', state.cls); form.append('split', state.isSplit ? $('split-choice').value : 'all');
  form.append('file', blob, name);
  try { const r = await api('/api/upload', { method: 'POST', body: form }); say(`added ${r.added}`); }
  catch (e) { say(e.message); }
}
$('files').onchange = () => addFiles($('files').files);
dropZone($('drop'), files => addFiles(files));

function dropZone(zone, take) {
  zone.addEventListener('dragover', e => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', e => { e.preventDefault(); zone.classList.remove('over'); take(e.dataTransfer.files); });
}

async function startCamera(video) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  video.srcObject = stream;
  await new Promise(resolve => { if (video.readyState >= 2) resolve(); else video.onloadeddata = resolve; });
  return stream;
}
function frame(video, width) {
  const canvas = el('canvas'), scale = width ? Math.min(1, width / video.videoWidth) : 1;
  canvas.width = Math.round(video.videoWidth * scale); canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise(resolve => canvas.toBlob(resolve, 'image/jpeg', 0.92));
}
let cameraStream = null;
$('camera-start').onclick = async () => {
  try { cameraStream = await startCamera($('video')); $('camera').classList.remove('hidden'); }
  catch (e) { say('no webcam: ' + e.message); }
};
$('capture').onclick = async () => { await addBlob(await frame($('video')), `webcam-${Date.now()}.jpg`); await refresh(); };
$('camera-stop').onclick = () => {
  if (cameraStream) cameraStream.getTracks().forEach(t => t.stop());
  $('camera').classList.add('hidden');
};

// the Inbox: the photos of _unsorted/, a page per suggested class; untick the wrong ones, accept the rest at once
$('inbox-suggest').onclick = async () => { try { showInbox(await post('/api/inbox/suggest')); pollInbox(); } catch (e) { say(e.message); } };
async function pollInbox() {
  let r;
  try { r = await api('/api/inbox'); } catch (e) { say(e.message); return; }
  showInbox(r);
  if (r.status === 'running') setTimeout(pollInbox, 700);
  else if (r.sharpening) setTimeout(pollInboxStatus, 2000);
}
async function pollInboxStatus() {  // the line above the pages only: they never change under the person's hands
  let r;
  try { r = await api('/api/inbox'); } catch (e) { return; }
  if (r.status === 'running') return;  // a new round is under way: its own polling shows it
  inboxStatus(r);
  if (r.sharpening) setTimeout(pollInboxStatus, 2000);
}
function inboxStatus(r) {
  $('inbox-count').textContent = r.unsorted ? `(${r.unsorted} unsorted photos in _unsorted/)` : '(put unsorted photos in _unsorted/)';
  $('inbox-status').textContent = r.status === 'running' ? 'suggesting...' : (r.error || (r.pages.length ? `suggestions ${r.how}` : ''));
}
function showInbox(r) {
  inboxStatus(r);
  if (r.status === 'running') return;  // the pages shown stay until the new ones come
  const box = $('inbox'); box.replaceChildren();
  box.dataset.round = String(Number(box.dataset.round || 0) + 1);  // pages shown so far (the browser tests wait on it)
  for (const page of r.pages.filter(p => p.photos.length)) {
    const grid = el('div', { class: 'grid' });
    for (const p of page.photos) {
      const tick = el('input', { type: 'checkbox' }); tick.checked = true;
      const how = `${(100 * p.probability).toFixed(0)}%${p.unknown ? ', like none of the classes' : ''}`;
      grid.append(el('div', { class: 'thumb inbox-card', 'data-path': p.path },
        el('img', { src: thumbUrl(p.path), alt: p.path, loading: 'lazy' }), el('label', {}, tick, el('span', { text: ' ' + how }))));
    }
    const accept = el('button', { class: 'inbox-accept', text: `Accept the ticked as ${page.name}`, onclick: () => acceptPage(page.name, grid) });
    const name = el('input', { class: 'inbox-new-name', placeholder: 'or a new class', maxlength: '100' });
    const create = el('button', { class: 'inbox-new', text: 'New class from the ticked', onclick: () => name.value && acceptPage(name.value, grid, true) });
    box.append(el('div', { class: 'inbox-page', 'data-class': page.name }, el('h3', { text: `${page.name}: ${page.photos.length} suggested` }), grid, accept, ' ', name, create));
  }
  if ((r.first || []).length) {  // the least sure suggestions: sorted by hand, each teaches the model most
    const grid = el('div', { class: 'grid' });
    for (const p of r.first) grid.append(photoCard(p.path, el('div', { text: `perhaps ${p.suggested}?` })));
    box.append(el('div', { class: 'inbox-first' }, el('h3', { text: 'Label these first: the model is least sure of them' }), grid));
  }
}
async function acceptPage(cls, grid, isNew = false) {
  const accept = [], reject = [];
  for (const card of grid.querySelectorAll('.inbox-card')) (card.querySelector('input').checked ? accept : reject).push(card.dataset.path);
  let r;  // a new class: the unticked are not rejected for it (they were never offered as it)
  try { r = await post('/api/inbox/accept', { cls, accept, reject: isNew ? [] : reject, new: isNew }); } catch (e) { say(e.message); return; }
  const ids = r.entries.map(e => e.id);
  $('inbox-last').replaceChildren(el('span', { text: `accepted ${accept.length} as ${cls}, ${reject.length} not ${cls} ` }),
    el('button', { id: 'inbox-undo', text: 'undo this page', onclick: () => undoPage(ids) }));
  await refresh(); pollInbox();
}
async function undoPage(ids) {
  try { for (const id of ids) await post('/api/undo', { id }); say(`undone: ${ids.length} photos back in _unsorted/`); }
  catch (e) { say(e.message); }
  $('inbox-last').replaceChildren();
  await refresh(); $('inbox-suggest').click();
}

// findings: the doctor's, then the label check's, each photo with its reason and what to do
$('check').onclick = () => startCheck(false);
$('check-labels').onclick = () => startCheck(true);
$('check-shortcuts').onclick = () => startCheck(false, true);
async function startCheck(labels, shortcuts = false) {
  state.checked = true;
  try { await post('/api/check', { labels, shortcuts }); pollFindings(); } catch (e) { say(e.message); }
}
async function pollFindings() {
  const f = await api('/api/findings');
  const jobs = [f.doctor, f.labels, f.shortcuts];
  const running = jobs.some(j => j.status === 'running');
  $('check-status').textContent = running ? 'checking...' : jobs.map(j => j.error).filter(Boolean).join('; ');
  showFindings(f);
  if (running) setTimeout(pollFindings, 1000);
}
function showFindings(f) {
  const box = $('findings'); box.replaceChildren();
  const report = f.doctor.report;
  const shortcuts = f.shortcuts.status === 'finished' ? f.shortcuts.findings : [];
  if (report || shortcuts.length) {
    for (const finding of [...(report ? report.findings : []), ...shortcuts]) {
      const div = el('div', { class: 'finding ' + finding.severity, 'data-kind': finding.kind },
        el('strong', { text: `${finding.severity}: ${finding.message}` }));
      const grid = el('div', { class: 'grid' });
      for (const path of (finding.photos || []).slice(0, 24)) grid.append(photoCard(path, el('div', { text: finding.kind })));
      div.append(grid); box.append(div);
    }
    if (report && !report.findings.length) box.append(el('p', { text: 'The doctor found nothing wrong.' }));
  }
  if (f.shortcuts.status === 'finished' && !shortcuts.length) box.append(el('p', { text: 'No shortcut found.' }));
  const check = f.labels.check;
  if (check) {
    const head = check.estimated_errors !== undefined
      ? `About ${check.estimated_errors} photos in this folder have the wrong label (estimated); the most likely:`
      : 'Photos whose label the model doubts:';
    box.append(el('h3', { text: head }));
    for (const kind of ['label', 'ambiguous', 'outlier']) {
      const issues = check.issues.filter(i => i.kind === kind);
      if (!issues.length) continue;
      const title = { label: 'Likely wrong label', ambiguous: 'Looks like two classes', outlier: 'An unusual photo' }[kind];
      const div = el('div', { class: 'finding warning', 'data-kind': kind }, el('strong', { text: `${title} (${issues.length})` }));
      const grid = el('div', { class: 'grid' });
      for (const issue of issues.slice(0, 24)) {
        const why = el('div', { text: kind === 'outlier' ? `far from every photo (z ${issue.outlier_z.toFixed(1)})`
          : `${issue.label}? looks like ${issue.suggested} (${(100 * issue.p_suggested).toFixed(0)}%)` });
        if (kind !== 'outlier') why.append(el('button', { text: `move to ${issue.suggested}`,
          onclick: () => move(issue.path, issue.suggested, `label check: looks like ${issue.suggested}`) }));
        grid.append(photoCard(issue.path, why));
      }
      div.append(grid); box.append(div);
    }
  }
  findingsHeat();
}
// the findings' photos: thumbnails, or where the live model's answer for each comes from (a cue it learned shows)
function findingsHeat() { heatImages('#findings .thumb', $('findings-heat').checked, ''); }
$('findings-heat').onchange = findingsHeat;
// the photo cards under `selector`: thumbnails, or the heat maps of run `run`'s answers ('': the live model's)
function heatImages(selector, heat, run) {
  for (const card of document.querySelectorAll(selector)) {
    const path = card.dataset.path, img = card.querySelector('img');
    const url = '/api/heatmap?' + (run ? 'run=' + encodeURIComponent(run) + '&' : '') + 'photo=' + encodeURIComponent(path);
    img.onerror = heat ? () => { img.onerror = null; img.src = thumbUrl(path); say('no heat map for this model yet'); } : null;
    img.src = heat ? url : thumbUrl(path);
  }
}

// --- 2 train -----------------------------------------------------------------------------------------------------
async function loadChoices() {
  const { backbones, strategies } = await api('/api/backbones');
  const s = $('strategies'); s.replaceChildren();
  for (const name of strategies) {
    s.append(el('label', {}, el('input', { type: 'checkbox', name: 'strategy', value: name,
      ...(name !== 'two-stage' ? { checked: '' } : {}) }), ` ${name} `));
  }
  const b = $('backbones'); b.replaceChildren(el('span', { text: 'backbones: ' }));
  for (const spec of backbones) {
    const props = { type: 'checkbox', name: 'backbone', value: spec.name };
    if (!spec.at_hand) props.disabled = ''; else if (spec.name === backbones.find(x => x.at_hand).name) props.checked = '';
    b.append(el('label', { title: spec.at_hand ? '' : 'its weights are not on this machine' }, el('input', props),
      ` ${spec.name} `));
  }
}

$('train-form').onsubmit = async event => {
  event.preventDefault();
  const mode = document.querySelector('input[name=mode]:checked').value;
  const body = { mode, budget: $('budget').value, seeds: Number($('seeds').value || 1),
    strategies: [...document.querySelectorAll('input[name=strategy]:checked')].map(i => i.value),
    backbones: [...document.querySelectorAll('input[name=backbone]:checked')].map(i => i.value) };
  if ($('epochs').value) body.epochs = Number($('epochs').value);
  try { await post('/api/train', body); follow(); } catch (e) { say(e.message); }
};
$('train-cancel').onclick = async () => { try { await post('/api/train/cancel'); say('cancelling: the runs keep what finished'); } catch (e) { say(e.message); } };

function follow() {
  const events = new EventSource('/api/train/events');
  events.onmessage = message => showProgress(JSON.parse(message.data));
  events.addEventListener('end', () => { events.close(); api('/api/train').then(showProgress).catch(e => say(e.message)); });
}
function seconds(s) { return s === null || s === undefined ? '' : s < 60 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`; }
const STEP_WORDS = { decoding: 'Decoding photos', features: 'Features', probe: 'Fitting the probe', training: 'Training',
  evaluation: 'Evaluating' };
function showProgress(p) {
  const running = p.status === 'running';
  $('train-start').disabled = running; $('train-cancel').disabled = !running;
  $('train-status').textContent = `${p.status}${p.folder ? ': ' + p.folder : ''} ${running ? '(' + seconds(p.elapsed)
    + ' so far' + (p.left !== null ? ', about ' + seconds(p.left) + ' left' : '') + ')' : ''}`;
  const steps = $('train-steps').tBodies[0]; steps.replaceChildren();
  for (const s of p.steps || []) {
    const finished = s.done >= s.total;
    const count = s.total > 1 ? `${s.done} of ${s.total}` : (finished ? 'done' : 'working...');
    steps.append(el('tr', { class: finished ? 'done' : 'now', 'data-step': s.step },
      el('td', { text: STEP_WORDS[s.step] || s.step }), el('td', { text: s.detail }), el('td', { text: count }),
      el('td', { text: finished ? '' : (s.left !== null ? 'about ' + seconds(s.left) + ' left' : '') })));
  }
  if (running && !(p.steps || []).length) {
    steps.append(el('tr', { class: 'now' }, el('td', { text: 'Starting' }), el('td', { text: 'loading the libraries' }),
      el('td', { text: 'working...' }), el('td', { text: '' })));
  }
  $('train-steps').classList.toggle('hidden', !steps.rows.length);
  const body = $('train-runs').tBodies[0]; body.replaceChildren();
  for (const r of p.runs) {
    const pct = v => v === null || v === undefined ? '' : (100 * v).toFixed(1) + '%';
    body.append(el('tr', { 'data-run': r.name }, ...[r.name, r.stage || '', r.epoch ?? '', pct(r.val_acc), pct(r.best_val_acc),
      r.status].map(v => el('td', { text: String(v) }))));
  }
  $('train-runs').classList.toggle('hidden', !p.runs.length);
  $('train-lines').textContent = (p.lines || []).join('\n');
  $('train-lines').classList.toggle('hidden', !(p.lines || []).length);
  $('train-answer').textContent = p.answer || '';
}

// --- 3 results ---------------------------------------------------------------------------------------------------
async function loadRuns() {
  const { runs } = await api('/api/runs');
  state.runs = runs;
  for (const id of ['result-run', 'try-run', 'ship-run']) {
    const select = $(id), chosen = select.value;
    const options = runs.map(r => el('option', { value: r.name, text: `${r.name} (${r.kind})` }));
    if (id === 'try-run') options.unshift(el('option', { value: '', text: 'the live model' }));
    select.replaceChildren(...options);
    if (chosen && runs.some(r => r.name === chosen)) select.value = chosen;
  }
  if (runs.length) { showResults($('result-run').value); updateShip(); }
}
$('result-run').onchange = () => showResults($('result-run').value);

async function showResults(name) {
  const r = await api('/api/results?run=' + encodeURIComponent(name));
  $('result-answer').textContent = r.sentence || '';
  $('result-run-name').textContent = r.run;
  const cells = $('cells').tBodies[0]; cells.replaceChildren();
  for (const c of r.cells) {
    cells.append(el('tr', {}, el('td', { text: c.label }), el('td', { text: (100 * c.accuracy).toFixed(1) + '%' }),
      el('td', { text: seconds(c.seconds) })));
  }
  $('plots').replaceChildren(...r.plots.map(p => el('img', { src: '/api/runfile?path=' + encodeURIComponent(name + '/' + p), alt: p })));
  const ev = r.evaluation, perClass = $('per-class').tBodies[0]; perClass.replaceChildren();
  $('confusion').replaceChildren(); $('cell-photos').replaceChildren(); $('wrong').replaceChildren();
  if (!ev) return;
  for (const [cls, s] of Object.entries(ev.per_class)) {
    perClass.append(el('tr', {}, ...[cls, s.precision, s.recall, s.f1].map((v, i) => el('td', { text: i ? v.toFixed(3) : v })),
      el('td', { text: String(s.support) })));
  }
  const table = $('confusion');
  table.append(el('tr', {}, el('th', { text: 'true \\ predicted' }), ...ev.classes.map(c => el('th', { text: c }))));
  ev.confusion.forEach((row, i) => {
    table.append(el('tr', {}, el('th', { text: ev.classes[i] }), ...row.map((n, j) => el('td', {
      class: 'cell' + (i !== j && n ? ' wrong' : ''), text: String(n), 'data-true': ev.classes[i], 'data-predicted': ev.classes[j],
      onclick: () => cellPhotos(r.predictions, ev.classes[i], ev.classes[j]) }))));
  });
  const wrong = r.predictions.filter(p => p.true !== p.predicted).sort((a, b) => b.probability - a.probability);
  const grid = el('div', { class: 'grid' });
  state.resultRun = name;
  for (const p of wrong.slice(0, 24)) {
    const why = el('div', { text: `${p.true}, predicted ${p.predicted} (${(100 * p.probability).toFixed(0)}%)` });
    if (p.photo) {
      why.append(el('button', { text: `move to ${p.predicted}`, onclick: () => move(p.photo, p.predicted, `results: predicted ${p.predicted}`) }));
      grid.append(photoCard(p.photo, why));
    }
  }
  $('wrong').append(grid);
  showHeat();
}
function cellPhotos(predictions, truth, predicted) {
  const grid = $('cell-photos'); grid.replaceChildren(el('p', { text: `true ${truth}, predicted ${predicted}:` }));
  for (const p of predictions.filter(p => p.true === truth && p.predicted === predicted && p.photo)) grid.append(photoCard(p.photo));
  showHeat();
}
// the wrong photos and a confusion cell's photos: the thumbnail, or the run's heat map of its answer
function showHeat() { heatImages('#wrong .thumb, #cell-photos .thumb', $('result-heat').checked, state.resultRun); }
$('result-heat').onchange = showHeat;

// --- 4 try -------------------------------------------------------------------------------------------------------
function tryUrl() {
  const run = $('try-run').value, explain = $('try-explain').checked ? 'explain=true' : '';
  if (run) return '/api/predict?run=' + encodeURIComponent(run) + (explain ? '&' + explain : '');
  return '/api/model/try' + (explain ? '?' + explain : '');
}
async function classify(blob, name) {
  const form = new FormData(); form.append('file', blob, name);
  return api(tryUrl(), { method: 'POST', body: form });
}
function showAnswer(body) {
  $('try-label').textContent = body.known === false
    ? `unknown: like none of the classes (nearest: ${body.nearest})` : `${body.label} (${(100 * body.probability).toFixed(1)}%)`;
  $('try-bars').replaceChildren(...body.topk.map(t => el('div', { class: 'row' }, el('span', { class: 'label', text: t.label }),
    el('div', { class: 'bar', style: `width:${Math.max(2, 300 * t.probability)}px` }),
    el('span', { class: 'pct', text: (100 * t.probability).toFixed(1) + '%' }))));
  if (body.heatmap) $('try-heat').src = body.heatmap;  // a data URL made by the server: the crop the model saw
  $('try-heat').classList.toggle('hidden', !body.heatmap);
}
async function tryBlob(blob, name) {
  const preview = $('try-preview'); preview.src = URL.createObjectURL(blob); preview.classList.remove('hidden');
  $('try-label').textContent = 'Thinking...'; $('try-bars').replaceChildren();
  try { showAnswer(await classify(blob, name)); } catch (e) { $('try-label').textContent = ''; say(e.message); }
}
$('try-file').onchange = () => $('try-file').files[0] && tryBlob($('try-file').files[0], $('try-file').files[0].name);
dropZone($('try-drop'), files => files[0] && tryBlob(files[0], files[0].name));

// the webcam, classified continuously: the next frame goes as soon as the answer to the last one is back
const webcam = { stream: null, frames: 0, since: 0 };
async function classifyFrames() {
  while (webcam.stream) {
    try {
      showAnswer(await classify(await frame($('try-video'), 320), 'webcam.jpg'));
      webcam.frames += 1;
      const elapsed = (performance.now() - webcam.since) / 1000;
      if (elapsed > 1) $('try-rate').textContent = `${(webcam.frames / elapsed).toFixed(1)} frames a second`;
    } catch (e) { say(e.message); await new Promise(r => setTimeout(r, 1000)); }
  }
}
$('try-camera').onclick = async () => {
  try { webcam.stream = await startCamera($('try-video')); } catch (e) { say('no webcam: ' + e.message); return; }
  $('try-video').classList.remove('hidden'); $('try-stop').classList.remove('hidden'); $('try-preview').classList.add('hidden');
  webcam.frames = 0; webcam.since = performance.now();
  classifyFrames();
};
$('try-stop').onclick = () => {
  if (webcam.stream) webcam.stream.getTracks().forEach(t => t.stop());
  webcam.stream = null; $('try-video').classList.add('hidden'); $('try-stop').classList.add('hidden'); $('try-rate').textContent = '';
};
// learning curves: each class's held-out recall with a quarter, half and all of its photos
$('live-curves').onclick = async () => { try { await post('/api/model/curves'); pollCurves(); } catch (e) { say(e.message); } };
async function pollCurves() {
  let r;
  try { r = await api('/api/model/curves'); } catch (e) { say(e.message); return; }
  $('curves-status').textContent = r.status === 'running' ? 'working it out...' : r.error;
  $('curves').replaceChildren(...r.classes.map(c => el('li', { class: c.rising ? 'rising' : 'flat', text: c.sentence })));
  if (r.status === 'running') setTimeout(pollCurves, 1000);
}
$('live-save').onclick = async () => {
  try { const r = await post('/api/model/save'); say(`saving the live model as ${r.folder}`); show('train'); follow(); }
  catch (e) { say(e.message); }
};

// --- the live model: always the model for the photos as they are ------------------------------------------------
let liveTimer = null;
async function pollLive() {
  clearTimeout(liveTimer);
  let m = null;
  try { m = await api('/api/model'); } catch (e) { /* the studio is away: try again later */ }
  if (m) showLive(m);
  liveTimer = setTimeout(pollLive, m && m.status === 'fitting' ? 300 : 2000);
}
function showLive(m) {
  const line = $('live');
  line.className = m.status; line.dataset.journal = m.journal; line.dataset.status = m.status;
  const fitted = m.photos ? `${m.photos} photos, ${(100 * m.accuracy).toFixed(1)}% held out` : '';
  line.textContent = m.status === 'none' ? `Live model: none yet${m.error ? ' (' + m.error + ')' : ''}`
    : m.status === 'fitting' ? `Live model: fitting...${fitted ? ' (was ' + fitted + ')' : ''}`
    : `Live model: ${fitted}, ${seconds(m.age_seconds)} old`;
  $('live-classes').tBodies[0].replaceChildren(...m.classes.map(c => el('tr', {}, el('td', { text: c.name }),
    el('td', { text: String(c.photos) }), el('td', { text: Number.isFinite(c.recall) ? (100 * c.recall).toFixed(0) + '%' : '' }))));
}
function thumbnailsShown(limit) {  // resolves once the thumbnails in view have loaded (or after `limit` ms)
  const start = Date.now();
  return new Promise(done => (function check() {
    const inView = [...document.querySelectorAll('#grid img')].filter(i => i.getBoundingClientRect().top < innerHeight);
    if (inView.every(i => i.complete) || Date.now() - start > limit) done(); else setTimeout(check, 100);
  })());
}

// --- 5 ship ------------------------------------------------------------------------------------------------------
function updateShip() {
  const name = $('ship-run').value, run = state.runs.find(r => r.name === name);
  $('download-run').href = '/api/download?what=run&run=' + encodeURIComponent(name);
  $('download-onnx').href = '/api/download?what=onnx&run=' + encodeURIComponent(name);
  $('download-onnx').classList.toggle('hidden', !(run && run.onnx));
}
$('ship-run').onchange = updateShip;
$('export').onclick = async () => {
  $('export-status').textContent = 'exporting and checking...';
  try {
    const r = await post('/api/export?run=' + encodeURIComponent($('ship-run').value));
    $('export-status').textContent = `done: ${r.file}, largest difference from PyTorch ${r.max_abs_diff.toExponential(2)}`;
    $('download-onnx').classList.remove('hidden');
  } catch (e) { $('export-status').textContent = e.message; }
};

// the live model's first pass (features of every photo the store has not seen) starts once the first page is shown:
// it would otherwise hold up the thumbnails (docs: Results, "The studio")
loadState().then(() => { if (!state.cls && state.classes.length) return openClass(state.classes[0].name); })
  .catch(e => say(e.message)).finally(() => thumbnailsShown(3000).then(() => { if (!liveTimer) pollLive(); }));
loadChoices().catch(e => say(e.message));
api('/api/train').then(p => { if (p.status !== 'idle') showProgress(p); if (p.status === 'running') follow(); })
  .catch(e => say(e.message));
pollInbox();
