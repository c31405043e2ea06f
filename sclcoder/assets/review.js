// The coder's desk: every decision is POSTed, and shown as saved only once the server has written it to disk.
const params = new URLSearchParams(location.search);
const TOKEN = params.get('token') || '';
let queue = [], note = null, focus = 0, current = null;
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function status(msg){document.getElementById('status').textContent = msg;}
async function api(path, body){
  const r = await fetch(path, {method: body ? 'POST' : 'GET', headers: {'content-type': 'application/json',
    'x-sclcoder-token': TOKEN}, body: body ? JSON.stringify(body) : undefined});
  const data = await r.json();
  if (!r.ok) { status('not saved: ' + (data.error || data.detail && JSON.stringify(data.detail) || r.status)); throw new Error(data.error); }
  return data;
}
async function loadQueue(){
  queue = (await api('/api/queue')).notes;
  const nav = document.getElementById('notes');
  nav.innerHTML = '';
  queue.forEach(q => {
    const a = document.createElement('a');
    a.dataset.id = q.id;
    a.className = (q.done ? 'done' : '') + (q.id === current ? ' sel' : '');
    const c = q.least_confidence === null ? '' : ' ' + Math.round(100*q.least_confidence) + '%';
    a.innerHTML = esc(q.id) + ' <small>(' + q.codes + c + ')</small>';
    a.addEventListener('click', () => open(q.id));
    nav.appendChild(a);
  });
}
async function open(id){ current = id; focus = 0; render(await api('/api/notes/' + encodeURIComponent(id))); loadQueue(); }
function render(n){
  note = n;
  const marks = [];
  n.codes.forEach(c => { if (c.status !== 'rejected') c.spans.forEach(s => { if (s.status !== 'rejected') marks.push([s.begin, s.end, c.code, c.status]); }); });
  const cuts = new Set([0, n.text.length]); marks.forEach(m => { cuts.add(m[0]); cuts.add(m[1]); });
  const pts = [...cuts].sort((a,b)=>a-b);
  let h = '';
  for (let i = 0; i + 1 < pts.length; i++) {
    const b = pts[i], e = pts[i+1];
    const on = marks.filter(m => m[0] <= b && e <= m[1]);
    const cls = on.length ? ' class="ev pred' + (on.some(m => m[3] === 'accepted') ? ' ok' : '') + '"' : '';
    h += `<span data-b="${b}"${cls} data-codes="${esc(on.map(m=>m[2]).join(' '))}">${esc(n.text.slice(b, e))}</span>`;
  }
  document.getElementById('text').innerHTML = h;
  let side = `<div class="legend">${n.codes.length} codes${n.done ? ' - done' : ''}</div>`;
  n.codes.forEach((c, i) => {
    const conf = c.confidence === null ? '' : `<span class="badge conf${c.confidence < 0.5 ? ' low' : ''}">${Math.round(100*c.confidence)}%</span>`;
    const spans = c.spans.map(s => `<div class="span ${s.status}" data-b="${s.begin}" data-e="${s.end}">"${esc(s.text)}" `
      + `<button data-act="accept_span">keep</button><button data-act="reject_span">drop</button></div>`).join('');
    const un = c.unplaced.length ? '<div class="errors">not found in the note: ' + c.unplaced.map(esc).join(', ') + '</div>' : '';
    side += `<div class="code ${c.status}${i === focus ? ' focus' : ''}" data-code="${esc(c.code)}" data-i="${i}">`
      + `<span class="c">${esc(c.code)}</span> <span class="st">${c.status}</span>${conf}<div>${esc(c.description || '')}</div>${spans}${un}`
      + `<button data-act="accept_code">accept (a)</button><button data-act="reject_code">reject (r)</button>`
      + `<button data-act="add_span">add selection (e)</button><button data-act="replace_span">replace with selection (x)</button></div>`;
  });
  side += `<input id="search" placeholder="add a code: search by code or words (/)"><div id="results"></div>`
    + `<button id="done">${n.done ? 'reopen' : 'mark note done (d)'}</button>`
    + `<div class="keys">j/k code, a accept, r reject, e add selected text, x replace, / search, d done, n/p note</div>`;
  const box = document.getElementById('codes'); box.innerHTML = side;
  box.querySelectorAll('.code').forEach(el => el.addEventListener('click', ev => {
    focus = +el.dataset.i; const act = ev.target.dataset && ev.target.dataset.act;
    if (!act) return highlight();
    const sp = ev.target.closest('.span');
    if (sp) return decide({action: act, code: el.dataset.code, begin: +sp.dataset.b, end: +sp.dataset.e});
    act.endsWith('_span') ? withSelection(act, el.dataset.code) : decide({action: act, code: el.dataset.code});
  }));
  document.getElementById('done').addEventListener('click', () => decide({action: n.done ? 'reopen' : 'done'}));
  const s = document.getElementById('search');
  s.addEventListener('input', () => search(s.value));
  s.addEventListener('keydown', ev => { if (ev.key === 'Escape') s.blur(); ev.stopPropagation(); });
  highlight();
}
function highlight(){
  document.querySelectorAll('.code').forEach((el, i) => el.classList.toggle('focus', i === focus));
  const c = note && note.codes[focus]; if (!c) return;
  document.querySelectorAll('#text .ev').forEach(x => x.classList.toggle('hl', x.dataset.codes.split(' ').includes(c.code)));
}
function selection(){
  // character offsets of the selected text in the note: each piece of the text knows where it starts
  const sel = window.getSelection(); if (!sel.rangeCount || sel.isCollapsed) return null;
  const r = sel.getRangeAt(0);
  const at = (node, off) => { const el = node.nodeType === 3 ? node.parentElement : node; const p = el.closest('[data-b]');
    return p && document.getElementById('text').contains(p) ? +p.dataset.b + off : null; };
  const b = at(r.startContainer, r.startOffset), e = at(r.endContainer, r.endOffset);
  return b === null || e === null || e <= b ? null : {begin: b, end: e};
}
function withSelection(action, code){
  const s = selection();
  if (!s) return status('select the words in the note first');
  decide({action, code, begin: s.begin, end: s.end});
}
async function decide(d){
  status('saving...');
  render(await api('/api/notes/' + encodeURIComponent(current), d));
  window.getSelection().removeAllRanges();
  status('saved: ' + d.action + (d.code ? ' ' + d.code : ''));
  loadQueue();
}
let timer = null;
function search(q){
  clearTimeout(timer);
  timer = setTimeout(async () => {
    const hits = q.trim() ? await api('/api/codes?q=' + encodeURIComponent(q)) : [];
    const box = document.getElementById('results');
    box.innerHTML = hits.map(h => `<div data-code="${esc(h.code)}"><b>${esc(h.code)}</b> ${esc(h.description)}</div>`).join('');
    box.querySelectorAll('div').forEach(el => el.addEventListener('click', () => {
      const s = selection();  // words selected in the note become the added code's evidence
      decide(Object.assign({action: 'add_code', code: el.dataset.code}, s || {}));
    }));
  }, 150);
}
function move(step){ const i = queue.findIndex(q => q.id === current); const q = queue[i + step]; if (q) open(q.id); }
document.addEventListener('keydown', ev => {
  if (!note || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const c = note.codes[focus];
  const keys = {
    j: () => { focus = Math.min(focus + 1, note.codes.length - 1); highlight(); },
    k: () => { focus = Math.max(focus - 1, 0); highlight(); },
    a: () => c && decide({action: 'accept_code', code: c.code}),
    r: () => c && decide({action: 'reject_code', code: c.code}),
    e: () => c && withSelection('add_span', c.code),
    x: () => c && withSelection('replace_span', c.code),
    d: () => decide({action: note.done ? 'reopen' : 'done'}),
    n: () => move(1), p: () => move(-1),
    '/': () => document.getElementById('search').focus(),
  };
  if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
});
loadQueue().then(() => { if (queue.length) open(queue[0].id); });
