"""The portal page at `/`, in the spirit of HexaFace: one form per served endpoint.

Forms are made from each task's request schema: image fields (facelab.uploads.ImageB64) become file
inputs sent as multipart, other fields text inputs holding JSON; PNG answers are shown as images.
"""

import html

from pydantic import BaseModel

_SCRIPT = """
async function send(form) {
  const out = form.querySelector('.out');
  out.textContent = '...';
  const method = form.dataset.method || 'POST';
  let body, headers = {};
  if (method !== 'GET' && form.querySelector('input[type=file]')) {
    body = new FormData(form);  // uploads: multipart, the only routes that take it
  } else if (method !== 'GET') {  // JSON routes take only application/json
    const fields = {};
    for (const [k, v] of new FormData(form)) {
      if (v === '') continue;
      try { fields[k] = JSON.parse(v); } catch (e) { fields[k] = v; }
    }
    body = JSON.stringify(fields);
    headers['content-type'] = 'application/json';
  }
  const r = await fetch(form.dataset.url, {method, body, headers});
  const type = r.headers.get('content-type') || '';
  if (type.startsWith('image/')) {
    out.innerHTML = '<img src="' + URL.createObjectURL(await r.blob()) + '">';
  } else {
    out.textContent = r.status + ' ' + JSON.stringify(await r.json(), null, 2);
  }
  return false;
}
"""
_STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}form{border:1px solid #ccc;padding:1em;"
          "margin:1em 0}pre{background:#f6f6f6;white-space:pre-wrap;max-height:20em;overflow:auto}img{max-width:100%}")


def _is_image(prop: dict) -> bool:
    return prop.get("format") == "image" or any(p.get("format") == "image" for p in prop.get("anyOf", []))


def _inputs(schema: type[BaseModel]) -> str:
    fields = []
    for name, prop in schema.model_json_schema().get("properties", {}).items():
        label = html.escape(prop.get("description") or prop.get("title") or name)
        if _is_image(prop):
            fields.append(f"<label>{html.escape(name)} <input type=file name={name} accept='image/*'></label> ")
        else:
            fields.append(f"<label>{html.escape(name)} <input name={name} placeholder='{label} (JSON)'></label> ")
    return "".join(fields)


def _form(title: str, url: str, inputs: str, method: str = "POST") -> str:
    return (f"<form data-url='{url}' data-method='{method}' onsubmit='send(this); return false'><h3>{html.escape(title)}</h3>"
            f"{inputs}<button>send</button><pre class=out></pre></form>")


def render(tasks: dict, gallery: bool) -> str:
    forms = []
    for name, task in tasks.items():
        forms.append(_form(f"POST /{name}", name, _inputs(task.Request)))
        for action, schema in task.actions.items():
            forms.append(_form(f"POST /{name}/{action}", f"{name}/{action}", _inputs(schema)))
    if gallery:
        forms.append(_form("POST /gallery/subjects (enroll)", "gallery/subjects",
                           "<input name=subject_id placeholder='subject id'> <input type=file name=images multiple accept='image/*'> "))
        forms.append(_form("GET /gallery/subjects", "gallery/subjects", "", method="GET"))
        forms.append(_form("POST /identify", "identify", "<input type=file name=image accept='image/*'> <input name=k value=5> "))
    return (f"<!doctype html><meta charset=utf-8><title>facelab</title><style>{_STYLE}</style><script>{_SCRIPT}</script>"
            f"<h1>facelab</h1><p>Every served model, one form each. Schemas and a try-it form: <a href='docs'>/docs</a>.</p>"
            + "".join(forms))
