"""The portal page at `/`, in the spirit of HexaFace: one form per served endpoint, answers drawn.

Forms are made from the request schemas (each task's `Request` and actions, the gallery's
EnrollRequest and IdentifyRequest): image fields (facelab.uploads.ImageB64) become file pickers
(`multiple` for a list of images) and the form is sent as multipart; other fields are text inputs
(JSON for numbers, lists and objects), checkboxes for booleans. Blank fields are left out, so a
field's default applies. The API key field is kept in the tab's `sessionStorage` only and sent as
`Authorization: Bearer <key>`.

Answers are drawn from their shape, whatever the task: every `box`/`bbox` (x1, y1, x2, y2) and
`landmarks` found in the answer is drawn on a canvas over the uploaded photo (a batch answer's
`predictions` pair with the uploaded files in order); an image answer (deblur, synth) is shown
beside the inputs; `distance` with `threshold` (verify, identify's matches) as a sentence and a
bar; `probabilities` as bars; lists of records (gallery subjects, matches) as tables; errors as
their status and message. Each form's answer is `.out` with `data-status` (the HTTP status, or
`error` when no answer came): what the browser test (tests/model/test_portal_browser.py) reads.
No external assets: the page works offline.
"""

import html
import json

from pydantic import BaseModel

_SCRIPT = r"""
const KEY = 'facelab-api-key';
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const num = v => typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v);

// --- the request: blank fields left out, images as multipart, path fields ({id}) into the URL ----
function request(form) {
  const method = form.dataset.method;
  let url = form.dataset.url;
  const fields = {}, files = [];
  for (const input of form.querySelectorAll('input[name]')) {
    if (input.type === 'file') {
      for (const file of input.files) files.push([input.name, file]);
    } else if (input.type === 'checkbox') {
      if (input.checked) fields[input.name] = true;
    } else if (input.value.trim() !== '') {
      let value = input.value.trim();
      if (input.dataset.json) { try { value = JSON.parse(value); } catch (e) { /* sent as text: the API names the field */ } }
      fields[input.name] = value;
    }
  }
  url = url.replace(/\{(\w+)\}/g, (_, name) => { const v = fields[name]; delete fields[name]; return encodeURIComponent(v ?? ''); });
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers['Authorization'] = 'Bearer ' + key;
  let body;
  if (method === 'GET' || method === 'DELETE') {
    body = undefined;
  } else if (form.dataset.upload) {  // multipart: every value as JSON text, which the API decodes
    body = new FormData();
    for (const [name, file] of files) body.append(name, file, file.name);
    for (const [name, value] of Object.entries(fields)) body.append(name, JSON.stringify(value));
  } else {
    body = JSON.stringify(fields);
    headers['Content-Type'] = 'application/json';
  }
  return {url, init: {method, headers, body}, files: files.map(f => f[1])};
}

async function send(form) {
  const out = form.querySelector('.out');
  out.dataset.status = 'pending';
  out.replaceChildren(el('p', {class: 'status'}, 'sending...'));
  const {url, init, files} = request(form);
  let answer, status, type = '';
  try {
    const r = await fetch(url, init);
    status = r.status;
    type = r.headers.get('content-type') || '';
    if (type.startsWith('image/')) answer = await r.blob();
    else {
      const text = await r.text();
      try { answer = JSON.parse(text); } catch (e) { answer = text; }
    }
  } catch (e) {
    out.dataset.status = 'error';
    out.replaceChildren(el('p', {class: 'status error'}, 'no answer: ' + e));
    return;
  }
  out.replaceChildren();
  if (status >= 400) {
    const err = answer && answer.error;
    const message = err ? err.message + (err.field ? ' (field: ' + err.field + ')' : '') : String(answer).slice(0, 2000);
    out.append(el('p', {class: 'status error'}, status + ' ' + (err ? err.code + ': ' : '') + message));
  } else {
    out.append(el('p', {class: 'status ok'}, String(status)));
    await show(out, answer, files);
  }
  if (!(answer instanceof Blob)) {
    const details = el('details');
    details.append(el('summary', {}, 'JSON'), el('pre', {class: 'json'}, typeof answer === 'string' ? answer : JSON.stringify(answer, null, 2)));
    out.append(details);
  }
  out.dataset.status = String(status);
}

// --- the answer, drawn from its shape ------------------------------------------------------------
async function show(out, answer, files) {
  const row = el('div', {class: 'row'});
  out.append(row);
  const parts = answer && Array.isArray(answer.predictions) && answer.predictions.length === files.length
    ? answer.predictions : files.map((_, i) => i === 0 ? answer : null);
  for (let i = 0; i < files.length; i++) row.append(await photo(files[i], marks(parts[i])));
  if (answer instanceof Blob) {
    const img = el('img', {class: 'answer', alt: 'answer'});
    img.src = URL.createObjectURL(answer);
    await img.decode().catch(() => {});
    row.append(figure(img, 'answer'));
    return;
  }
  if (answer && typeof answer === 'object') out.append(summary(answer));
  else out.append(el('p', {}, String(answer)));
}

function figure(content, caption) {
  const f = el('figure');
  f.append(content, el('figcaption', {}, caption));
  return f;
}

// Every box (`box`/`bbox`, x1 y1 x2 y2) and `landmarks` in an answer, with a label from its record.
function marks(answer) {
  const found = [];
  const walk = (v) => {
    if (Array.isArray(v)) { v.forEach(walk); return; }
    if (!v || typeof v !== 'object') return;
    const box = v.box || v.bbox;
    if (Array.isArray(box) && box.length === 4 && box.every(x => typeof x === 'number')) {
      const label = ['masktype', 'subject_id', 'label', 'emotion'].map(k => v[k]).find(x => x !== undefined)
        ?? (v.matches && v.matches[0] ? v.matches[0].subject_id : undefined);
      const score = v.score ?? v.confidence;
      found.push({box, landmarks: Array.isArray(v.landmarks) ? v.landmarks : [],
                  label: [label, score === undefined ? undefined : num(score)].filter(x => x !== undefined).join(' ')});
    }
    for (const [k, x] of Object.entries(v)) if (k !== 'box' && k !== 'bbox' && k !== 'landmarks') walk(x);
  };
  walk(answer);
  return found;
}

async function photo(file, found) {
  const canvas = el('canvas', {class: 'photo', 'data-boxes': String(found.length),
                               'data-landmarks': String(found.reduce((n, m) => n + m.landmarks.length, 0))});
  let image;
  try { image = await createImageBitmap(file); } catch (e) {
    return figure(el('p', {class: 'note'}, 'this browser cannot show ' + file.name), file.name);
  }
  canvas.width = image.width; canvas.height = image.height;
  const g = canvas.getContext('2d');
  g.drawImage(image, 0, 0);
  const line = Math.max(2, Math.round(Math.max(image.width, image.height) / 150));
  g.lineWidth = line; g.font = (6 * line) + 'px sans-serif';
  for (const m of found) {
    const [x1, y1, x2, y2] = m.box;
    g.strokeStyle = '#0c0'; g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    if (m.label) {
      g.fillStyle = '#0c0'; g.fillRect(x1, Math.max(0, y1 - 7 * line), g.measureText(m.label).width + 2 * line, 7 * line);
      g.fillStyle = '#000'; g.fillText(m.label, x1 + line, Math.max(6 * line, y1 - line));
    }
    g.fillStyle = '#f0f';
    for (const [x, y] of m.landmarks) { g.beginPath(); g.arc(x, y, 1.5 * line, 0, 2 * Math.PI); g.fill(); }
  }
  return figure(canvas, file.name + (found.length ? ' (' + found.length + (found.length === 1 ? ' box)' : ' boxes)') : ''));
}

// Scalars as a list, `distance` against `threshold` as a sentence and a bar, `probabilities` as
// bars, lists of records as tables; nested records the same way.
function summary(answer) {
  const box = el('div', {class: 'summary'});
  if (typeof answer.distance === 'number' && typeof answer.threshold === 'number') box.append(verdict(answer));
  const dl = el('dl');
  for (const [k, v] of Object.entries(answer)) {
    if (v === null || typeof v !== 'object') {
      dl.append(el('dt', {}, k), el('dd', {'data-field': k}, num(v)));
    } else if (k === 'probabilities' && !Array.isArray(v)) {
      box.append(bars(v));
    } else if (Array.isArray(v) && v.length && v.every(x => x && typeof x === 'object' && !Array.isArray(x))) {
      box.append(table(k, v));
    } else if (!Array.isArray(v)) {
      box.append(summary(v));
    } else if (!(k === 'box' || k === 'bbox' || k === 'landmarks')) {
      dl.append(el('dt', {}, k), el('dd', {'data-field': k}, v.length ? JSON.stringify(v).slice(0, 200) : '(none)'));
    }
  }
  if (dl.children.length) box.prepend(dl);
  return box;
}

function verdict(a) {
  const same = a.same ?? (a.distance <= a.threshold);
  const p = el('p', {class: 'verdict', 'data-distance': String(a.distance), 'data-threshold': String(a.threshold)},
    'distance ' + num(a.distance) + (a.distance <= a.threshold ? ' \u2264 ' : ' > ') + 'threshold ' + num(a.threshold)
    + ': ' + (same ? 'the same person' : 'different people'));
  const scale = Math.max(a.distance, a.threshold) * 1.25 || 1;
  const bar = el('div', {class: 'bar'});
  bar.append(el('span', {class: same ? 'fill same' : 'fill', style: 'width:' + (100 * a.distance / scale) + '%'}),
             el('span', {class: 'cut', style: 'left:' + (100 * a.threshold / scale) + '%', title: 'threshold'}));
  const div = el('div');
  div.append(p, bar);
  return div;
}

function bars(probabilities) {
  const t = el('table', {class: 'probabilities'});
  for (const [k, v] of Object.entries(probabilities).sort((a, b) => b[1] - a[1])) {
    const tr = el('tr'), cell = el('td');
    cell.append(el('span', {class: 'fill', style: 'width:' + (100 * v) + '%'}));
    tr.append(el('td', {}, k), cell, el('td', {}, num(v)));
    t.append(tr);
  }
  return t;
}

function table(name, records) {
  const keys = [...new Set(records.flatMap(Object.keys))].filter(k => !['box', 'bbox', 'landmarks'].includes(k));
  const t = el('table', {class: 'records', 'data-name': name});
  t.append(el('caption', {}, name + ' (' + records.length + ')'));
  const head = el('tr');
  keys.forEach(k => head.append(el('th', {}, k)));
  t.append(head);
  for (const r of records) {
    const tr = el('tr');
    keys.forEach(k => tr.append(el('td', {'data-field': k}, r[k] === undefined ? '' : typeof r[k] === 'object' ? JSON.stringify(r[k]) : num(r[k]))));
    t.append(tr);
  }
  return t;
}

document.addEventListener('DOMContentLoaded', () => {
  const key = document.getElementById('key');
  key.value = sessionStorage.getItem(KEY) || '';
  key.addEventListener('input', () => sessionStorage.setItem(KEY, key.value.trim()));
  for (const form of document.querySelectorAll('form.call')) {
    form.addEventListener('submit', (event) => { event.preventDefault(); send(form); });
  }
});
"""

_STYLE = """
body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em}
form{border:1px solid #ccc;border-radius:4px;padding:.5em 1em 1em;margin:1em 0}
label{display:inline-block;margin:.2em 1em .2em 0} input:not([type]){width:14em}
.out:empty{display:none} .status.error{color:#b00;font-weight:bold} .status.ok{color:#070}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start} figure{margin:0}
canvas,img.answer{max-width:30em;max-height:24em;border:1px solid #ddd}
figcaption{font-size:small;color:#555} pre{background:#f6f6f6;white-space:pre-wrap;max-height:20em;overflow:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:0 1em} dt{font-weight:bold} dd{margin:0}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:2px 6px;font-size:small}
.bar{position:relative;height:1em;width:24em;background:#eee} .bar .fill{position:absolute;height:100%;background:#d55}
.bar .fill.same{background:#5a5} .bar .cut{position:absolute;top:-3px;bottom:-3px;border-left:2px solid #000}
.probabilities td:nth-child(2){width:12em} .probabilities .fill{display:block;height:.8em;background:#58c}
#key{width:20em}
"""


def _is_image(prop: dict) -> bool:
    return prop.get("format") == "image" or any(p.get("format") == "image" for p in prop.get("anyOf", []))


def _is_images(prop: dict) -> bool:
    """A list of images: `multiple` file picker."""
    for option in [prop, *prop.get("anyOf", [])]:
        if option.get("type") == "array" and _is_image(option.get("items", {})):
            return True
    return False


def _types(prop: dict) -> set:
    return {option.get("type") for option in [prop, *prop.get("anyOf", [])]} - {None, "null"}


def _inputs(schema: type[BaseModel]) -> tuple[str, bool]:
    """The form's inputs from a request model, and whether it takes uploads (sent as multipart)."""
    fields, uploads = [], False
    for name, prop in schema.model_json_schema().get("properties", {}).items():
        tip = html.escape(prop.get("description") or "", quote=True)
        shown = html.escape(name)
        if _is_images(prop) or _is_image(prop):
            uploads = True
            multiple = " multiple" if _is_images(prop) else ""
            fields.append(f"<label title='{tip}'>{shown} <input type=file name={name} accept='image/*'{multiple}></label>")
        elif _types(prop) == {"boolean"}:
            fields.append(f"<label title='{tip}'><input type=checkbox name={name}> {shown}</label>")
        else:
            kind = " type=number" if _types(prop) <= {"integer", "number"} and _types(prop) else ""
            as_json = "" if _types(prop) == {"string"} else " data-json=1"
            default = "" if prop.get("default") is None else f" (default {json.dumps(prop['default'])})"
            hint = html.escape(("JSON " if as_json and not kind else "") + (prop.get("description") or name) + default, quote=True)
            fields.append(f"<label title='{tip}'>{shown} <input name={name}{kind}{as_json} placeholder='{hint}'></label>")
    return " ".join(fields), uploads


def _form(title: str, url: str, inputs: str = "", uploads: bool = False, method: str = "POST", button: str = "send") -> str:
    upload = " data-upload=1" if uploads else ""
    return (f"<form class=call data-url='{html.escape(url, quote=True)}' data-method={method}{upload}>"
            f"<h3>{html.escape(title)}</h3>{inputs} <button>{html.escape(button)}</button>"
            f"<div class=out data-status=''></div></form>")


def render(tasks: dict, gallery: bool) -> str:
    from serve.api import EnrollRequest, IdentifyRequest

    forms = []
    for name, task in tasks.items():
        forms.append(_form(f"POST /{name}", name, *_inputs(task.Request)))
        for action, schema in task.actions.items():
            forms.append(_form(f"POST /{name}/{action}", f"{name}/{action}", *_inputs(schema)))
    if gallery:
        forms.append("<h2>Gallery</h2>")
        forms.append(_form("POST /gallery/subjects (enrol)", "gallery/subjects", *_inputs(EnrollRequest), button="enrol"))
        forms.append(_form("GET /gallery/subjects (list)", "gallery/subjects", method="GET", button="list"))
        forms.append(_form("POST /identify", "identify", *_inputs(IdentifyRequest), button="identify"))
        forms.append(_form("DELETE /gallery/subjects/{subject_id}", "gallery/subjects/{subject_id}",
                           "<label>subject_id <input name=subject_id placeholder='the subject to delete'></label>",
                           method="DELETE", button="delete"))
    return ("<!doctype html><html lang=en><meta charset=utf-8><title>facelab</title>"
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script>"
            "<h1>facelab</h1><p>Every served model, one form each: pick a photo, send, and the answer is drawn "
            "below the form. Schemas and a try-it form: <a href='docs'>/docs</a>.</p>"
            "<p><label>API key <input id=key type=password autocomplete=off "
            "placeholder='kept in this tab only (sessionStorage)'></label></p>" + "".join(forms))
