"""The web service's pages: server-rendered HTML with inline CSS and JavaScript, nothing fetched
from elsewhere (the page must work on a network without internet)."""

from __future__ import annotations

import html

from .config import Config

_STYLE = """
:root { color-scheme: light dark; --fg: #1b1b1b; --bg: #f6f6f4; --card: #fff; --line: #d5d5d0; --accent: #0072b2; }
@media (prefers-color-scheme: dark) { :root { --fg: #eee; --bg: #151515; --card: #202020; --line: #3a3a3a; --accent: #56b4e9; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 12px 20px; border-bottom: 1px solid var(--line); display: flex; gap: 16px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
header span { opacity: .7; }
main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px; min-width: 0; }
h2 { font-size: 16px; margin: 0 0 10px; }
#drop { border: 2px dashed var(--line); border-radius: 8px; padding: 22px; text-align: center; cursor: pointer; }
#drop.over { border-color: var(--accent); background: rgba(0, 114, 178, .08); }
img.view { display: block; max-width: 100%; height: auto; margin-top: 10px; border-radius: 4px; }
table { border-collapse: collapse; width: 100%; margin-top: 10px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left; white-space: nowrap; }
th { font-weight: 600; }
.female { color: #d55e00; } .male { color: var(--accent); }
.muted { opacity: .7; } .error { color: #d55e00; font-weight: 600; }
.stats { display: flex; gap: 18px; flex-wrap: wrap; margin-top: 8px; }
.stats b { font-size: 20px; display: block; }
button, input[type=submit] { font: inherit; padding: 6px 14px; }
"""

_SCRIPT = """
const drop = document.getElementById('drop'), input = document.getElementById('file');
const out = document.getElementById('result'), msg = document.getElementById('msg');
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c])); }
function fmt(v, d) { return v === null || v === undefined ? '-' : Number(v).toFixed(d); }
function row(f, i) {
  const [x1, y1, x2, y2] = f.xyxy, w = x2 - x1, h = y2 - y1;
  const g = f.gender ? `<span class="${f.gender}">${f.gender}</span> ${fmt(100 * f.gender_p, 0)}%` :
    (f.too_small ? 'too small' : (f.turned ? 'turned' : '-'));
  const age = f.age === null ? '-' : `${fmt(f.age, 0)} (${esc(f.age_group)})`;
  const range = f.age_range ? `${fmt(f.age_range[0], 0)}-${fmt(f.age_range[1], 0)}` : '-';
  return `<tr><td>${i + 1}</td><td>${g}</td><td>${age}</td><td>${range}</td>` +
    `<td>${fmt(x1, 0)}, ${fmt(y1, 0)}, ${fmt(x2, 0)}, ${fmt(y2, 0)}</td><td>${fmt(w, 0)}x${fmt(h, 0)}</td>` +
    `<td>${fmt(f.score, 2)}</td></tr>`;
}
const maxBytes = Number(document.getElementById('form').dataset.maxBytes);
async function analyse(file) {
  if (!file) return;
  if (file.size > maxBytes) {  // the service would refuse it unread; do not send it at all
    msg.className = 'error';
    msg.textContent = `${file.name} is ${(file.size / 1e6).toFixed(1)} MB, above the limit of ` +
      `${(maxBytes / 1048576).toFixed(0)} MB (web.max_upload_mb); choose a smaller image`;
    out.innerHTML = ''; return;
  }
  msg.className = 'muted'; msg.textContent = `analysing ${file.name} ...`; out.innerHTML = '';
  const body = new FormData(); body.append('image', file);
  try {
    const r = await fetch('/api/analyze?image=1', {method: 'POST', body, credentials: 'same-origin'});
    const data = await r.json();
    if (!r.ok) { msg.className = 'error'; msg.textContent = `${r.status}: ${data.error}`; return; }
    const t = Object.entries(data.timing_ms).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ');
    msg.className = 'muted';
    msg.textContent = `${file.name}: ${data.size_wh[0]}x${data.size_wh[1]}, ${data.faces.length} face(s); ${t}`;
    out.innerHTML = `<img class="view" id="annotated" alt="annotated photo" src="data:image/jpeg;base64,${data.image_jpeg_base64}">` +
      '<table id="faces"><thead><tr><th>#</th><th>gender</th><th>age</th><th>range</th><th>box (x1, y1, x2, y2)</th>' +
      '<th>size px</th><th>score</th></tr></thead><tbody>' + data.faces.map(row).join('') + '</tbody></table>';
  } catch (e) { msg.className = 'error'; msg.textContent = `upload failed: ${e}`; }
}
drop.addEventListener('click', () => input.click());
input.addEventListener('change', () => analyse(input.files[0]));
drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', e => { e.preventDefault(); drop.classList.remove('over'); analyse(e.dataTransfer.files[0]); });
document.getElementById('form').addEventListener('submit', e => { e.preventDefault(); analyse(input.files[0]); });
const live = document.getElementById('live');
if (live) {
  const note = document.getElementById('livenote');
  live.addEventListener('error', () => {  // all viewer slots taken, or the run ended: a still every 2 s
    note.textContent = 'live stream unavailable (viewer limit or source ended); showing the latest frame every 2 s';
    live.dataset.poll = '1';
  });
  setInterval(() => { if (live.dataset.poll) live.src = '/api/latest.jpg?t=' + Date.now(); }, 2000);
  async function stats() {
    try {
      const s = await (await fetch('/api/stats', {credentials: 'same-origin'})).json();
      document.getElementById('people').textContent = s.people_in_view ?? (s.faces_in_frame ?? '-');
      document.getElementById('fps').textContent = s.fps === undefined ? '-' : Number(s.fps).toFixed(1);
      document.getElementById('frames').textContent = s.frames_out ?? '-';
      document.getElementById('state').textContent = s.run === 'ended' ? 'ended' : (s.source_up === false ? 'reconnecting' : (s.run || '-'));
    } catch (e) { document.getElementById('state').textContent = 'server unreachable'; }
  }
  stats(); setInterval(stats, 1000);
}
"""


def _page(title: str, body: str, script: str = "") -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}"
            + (f"<script>{script}</script>" if script else "") + "</body></html>")


def main_page(config: Config, live: bool) -> str:
    """``/``: the upload form (file picker and drag-and-drop), the result (annotated image and a
    table of faces), and the live view with people count and fps when a source runs."""
    web = config.web
    live_html = ""
    if live:
        live_html = (
            "<section><h2>Live view</h2>"
            "<div class=stats><div><b id=people>-</b>people in view</div><div><b id=fps>-</b>fps</div>"
            "<div><b id=frames>-</b>frames</div><div><b id=state>-</b>source</div></div>"
            "<img class=view id=live alt='live annotated view' src='/api/stream.mjpeg'>"
            "<p class=muted id=livenote></p></section>"
        )
    body = (
        "<header><h1>streamer</h1><span>face detection, gender and age</span></header><main>"
        "<section><h2>Analyse a photo</h2>"
        "<form id=form action='/api/analyze?format=jpeg' method=post enctype='multipart/form-data' "
        f"data-max-bytes={int(web.max_upload_mb * 1024 * 1024)}>"
        "<div id=drop>Drop a photo here, or click to choose one"
        f"<br><span class=muted>JPEG, PNG, WebP or BMP; at most {web.max_upload_mb:g} MB and "
        f"{web.max_image_mp:g} megapixels</span></div>"
        "<input id=file type=file name=image accept='image/*' hidden>"
        "<noscript><input type=file name=image accept='image/*'> <input type=submit value=Analyse></noscript>"
        "</form><p id=msg class=muted></p><div id=result></div></section>"
        f"{live_html}</main>"
    )
    return _page("streamer", body, _SCRIPT)


def login_page(problem: str = "") -> str:
    """``/login``: one field for the access token; a right one sets the session cookie."""
    note = f"<p class=error>{html.escape(problem)}</p>" if problem else ""
    body = (
        "<header><h1>streamer</h1><span>access token needed</span></header><main><section>"
        f"<h2>Log in</h2>{note}<form method=post action='/login'>"
        "<input type=password name=token autocomplete=current-password placeholder='access token' size=40 autofocus> "
        "<input type=submit value='Log in'></form>"
        "<p class=muted>The token is STREAMER_TOKEN (or web.token) of the machine running the service.</p>"
        "</section></main>"
    )
    return _page("streamer: log in", body)
