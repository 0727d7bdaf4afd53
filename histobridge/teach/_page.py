"""The quiz page: one HTML file with its data, styles and script inline (works offline, from a USB stick).

The script checks answers only at the end, by hashing each option with the page's salt and comparing
with the question's token (Web Crypto SHA-256, available to pages opened from files), then opens the
sealed feedback with the matching answer.
"""

from __future__ import annotations

import html
import json

_CSS = "".join(
    (
        "body{font:16px/1.45 system-ui,sans-serif;margin:0;background:#f6f5f2;color:#222}",
        "main{max-width:720px;margin:2em auto;padding:1.5em;background:#fff;border-radius:8px;"
        "box-shadow:0 1px 4px #0002}",
        "h1{font-size:1.4em;margin-top:0}",
        ".muted{color:#666;font-size:.9em}",
        "button{font:inherit;padding:.5em 1.1em;margin:.25em;border:1px solid #888;border-radius:6px;"
        "background:#fafafa;cursor:pointer}",
        "button:hover{background:#e8eefc}",
        ".tile{display:block;margin:1em auto;width:320px;max-width:100%;image-rendering:auto}",
        ".tile.pair{width:640px}",
        "#options{text-align:center}",
        "#progress{float:right}",
        "table{border-collapse:collapse;width:100%;margin-top:1em}",
        "td,th{border-bottom:1px solid #ddd;padding:.3em;text-align:left;vertical-align:middle}",
        "td img{width:72px}",
        ".ok{color:#17692c;font-weight:600}",
        ".bad{color:#a11;font-weight:600}",
        "[hidden]{display:none!important}",
    )
)

_JS = r"""
const DATA = JSON.parse(document.getElementById('quiz-data').textContent);
const $ = (id) => document.getElementById(id);
let form = null, learner = '', pos = 0, answers = [], shownAt = 0;
const enc = new TextEncoder();
async function digest(text) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(text)));
}
async function hex(text) {
  return Array.from(await digest(text), (b) => b.toString(16).padStart(2, '0')).join('');
}
async function unseal(qid, answer, sealed) {
  const data = Uint8Array.from(atob(sealed), (c) => c.charCodeAt(0));
  const key = new Uint8Array(data.length + 32);
  for (let n = 0, c = 0; n < data.length; c++, n += 32) {
    key.set(await digest(`${DATA.salt}|${qid}|${answer}|k|${c}`), n);
  }
  return JSON.parse(new TextDecoder().decode(data.map((x, i) => x ^ key[i])));
}
function start(name) {
  learner = $('learner').value.trim() || 'anonymous';
  form = name; pos = 0; answers = [];
  $('start').hidden = true; $('quiz').hidden = false;
  show();
}
function show() {
  const q = DATA.forms[form][pos];
  $('progress').textContent = `${pos + 1} / ${DATA.forms[form].length}`;
  $('prompt').textContent = q.prompt;
  $('tile').src = q.image;
  $('tile').className = q.options.includes('left') ? 'tile pair' : 'tile';
  $('options').replaceChildren(...q.options.map((o) => {
    const b = document.createElement('button');
    b.textContent = o; b.dataset.option = o; b.onclick = () => answer(o);
    return b;
  }));
  shownAt = performance.now();
}
function answer(option) {
  const q = DATA.forms[form][pos];
  answers.push({id: q.id, answer: option, seconds: (performance.now() - shownAt) / 1000});
  pos += 1;
  if (pos < DATA.forms[form].length) show(); else finish();
}
async function finish() {
  $('quiz').hidden = true;
  let right = 0;
  const rows = [];
  for (const [i, a] of answers.entries()) {
    const q = DATA.forms[form][i];
    let truth = null;
    for (const o of q.options) if (await hex(`${DATA.salt}|${q.id}|${o}`) === q.token) truth = o;
    const fb = truth === null ? null : await unseal(q.id, truth, q.sealed);
    const ok = a.answer === truth;
    right += ok ? 1 : 0;
    rows.push({q, a, ok, fb});
  }
  $('score').textContent = `${right} / ${answers.length}`;
  $('feedback').replaceChildren(...rows.map(({q, a, ok, fb}) => {
    const tr = document.createElement('tr');
    tr.dataset.question = q.id;
    const what = fb ? `${fb.kind} ${fb.class} (${fb.source})` : '?';
    const pred = fb ? `${fb.predicted} — ${fb.prediction}` : '';
    tr.innerHTML = `<td><img alt=""></td><td>${q.prompt}</td><td class="${ok ? 'ok' : 'bad'}"></td>`
      + `<td class="truth"></td><td class="what"></td><td class="pred"></td>`;
    tr.querySelector('img').src = q.image;
    tr.children[2].textContent = a.answer + (ok ? ' ✓' : ' ✗');
    tr.querySelector('.truth').textContent = fb ? fb.answer : '?';
    tr.querySelector('.what').textContent = what;
    tr.querySelector('.pred').textContent = pred;
    return tr;
  }));
  const lines = ['learner,form,question_id,answer,correct,seconds'];
  const esc = (s) => `"${String(s).replace(/"/g, '""')}"`;
  for (const {q, a, ok} of rows) {
    lines.push([esc(learner), form, q.id, esc(a.answer), ok ? 1 : 0, a.seconds.toFixed(1)].join(','));
  }
  const link = $('download');
  link.href = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], {type: 'text/csv'}));
  link.download = `answers_${learner.replace(/[^A-Za-z0-9_-]+/g, '_')}_${form}.csv`;
  $('result').hidden = false;
}
for (const b of document.querySelectorAll('[data-form]')) b.onclick = () => start(b.dataset.form);
"""


def render_page(data: dict[str, object]) -> str:
    """The whole page; ``data`` is embedded as JSON (with ``</`` escaped so it cannot end the script)."""
    title = html.escape(str(data.get("title", "Quiz")))
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    forms = data.get("forms")
    names = sorted(forms) if isinstance(forms, dict) else []
    form_buttons = "".join(
        f'<button data-form="{html.escape(n)}">Form {html.escape(n)}</button>' for n in names
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{title}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{title}</h1>"
        "<section id='start'><p>Each tile is 64 px across the generator's field of view. Answer every "
        "question; the score and the answers appear at the end.</p>"
        "<p><label>Your name or code: <input id='learner' autocomplete='off'></label></p>"
        f"<p>{form_buttons}</p><p class='muted'>Your teacher tells you which form to take.</p></section>"
        "<section id='quiz' hidden><span id='progress' class='muted'></span><p id='prompt'></p>"
        "<img id='tile' class='tile' alt='tile'><div id='options'></div></section>"
        "<section id='result' hidden><h2>Score: <span id='score'></span></h2>"
        "<p><a id='download' href='#'>Download your answers (CSV)</a> and hand the file to your teacher.</p>"
        "<table><thead><tr><th></th><th>question</th><th>your answer</th><th>answer</th><th>the tile</th>"
        "<th>classifier</th></tr></thead><tbody id='feedback'></tbody></table></section>"
        f"</main><script type='application/json' id='quiz-data'>{payload}</script>"
        f"<script>{_JS}</script></body></html>\n"
    )
