// The audit view's behaviour: note list, highlighted evidence, click a code to see its spans.
const notes = JSON.parse(document.getElementById('data').textContent);
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function show(i){
  document.querySelectorAll('#notes a').forEach((a,k)=>a.classList.toggle('sel',k===i));
  const n = notes[i];
  document.getElementById('text').innerHTML = n.html;
  const box = document.getElementById('codes');
  let h = '<div class="legend">blue: predicted evidence; purple underline: gold evidence; click a code</div>';
  if (n.errors.length) h += '<div class="errors">' + n.errors.map(esc).join('<br>') + '</div>';
  n.codes.forEach(c => {
    let b = c.status ? `<span class="badge ${c.status}">${c.status}</span>` : '';
    if (!c.valid) b += `<span class="badge invalid" title="${esc(c.problem||'')}">invalid code</span>`;
    if (c.unaligned.length) b += `<span class="badge unaligned">${c.unaligned.length} unaligned quote(s)</span>`;
    if (c.confidence !== null && c.confidence !== undefined) b += `<span class="badge conf${c.confidence < 0.5 ? ' low' : ''}" title="the model's probability of writing this code">${Math.round(100*c.confidence)}%</span>`;
    if (c.support !== null && c.support !== undefined) b += `<span class="badge support${c.support < 0.5 ? ' low' : ''}" title="the model's probability of this code given only its quoted evidence">evidence ${Math.round(100*c.support)}%</span>`;
    if (c.withheld) b += '<span class="badge withheld" title="below predict.min_confidence: not predicted">withheld</span>';
    const un = c.unaligned.length ? '<div class="errors">not found in the note: ' + c.unaligned.map(q=>'"'+esc(q)+'"').join(', ') + '</div>' : '';
    h += `<div class="code" data-code="${esc(c.code)}"><span class="c">${esc(c.code)}</span>${b}<div>${esc(c.description||'')}</div>${un}</div>`;
  });
  box.innerHTML = h;
  box.querySelectorAll('.code').forEach(el => el.addEventListener('click', () => select(el)));
}
function select(el){
  const code = el.dataset.code, on = !el.classList.contains('active');
  document.querySelectorAll('.code').forEach(x => x.classList.remove('active'));
  document.querySelectorAll('.ev').forEach(x => x.classList.remove('hl'));
  if (!on) return;
  el.classList.add('active');
  let first = null;
  document.querySelectorAll('.ev').forEach(x => {
    const hit = x.dataset.codes.split(' ').includes(code) || x.dataset.gold.split(' ').includes(code);
    if (hit) { x.classList.add('hl'); first = first || x; }
  });
  if (first) first.scrollIntoView({block: 'center'});
}
const list = document.getElementById('notes');
notes.forEach((n,i) => {
  const a = document.createElement('a');
  const bad = n.codes.some(c => !c.valid || c.unaligned.length || c.status==='spurious' || c.status==='missed') || n.errors.length;
  a.innerHTML = esc(n.id) + ' <small>(' + n.codes.length + ')</small>' + (bad ? ' <span class="flag">!</span>' : '');
  a.addEventListener('click', () => show(i));
  list.appendChild(a);
});
if (notes.length) show(0);
