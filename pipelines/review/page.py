"""The review page: one card per sampled clip (audio, spectrogram, frames, the selected caption),
three judgments and an optional better caption; the estimate and an export button on top.

Everything the page shows of a clip is set with textContent: captions are model output and manifest
text, never markup. The script is inline and allowed by its hash (server.py sends the CSP).
"""

from __future__ import annotations

import html

PAGE_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5rem 3rem;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:.4rem 0;z-index:1}
.clip{border:1px solid #ddd;border-radius:4px;padding:.6rem;margin:.8rem 0;display:grid;
grid-template-columns:380px 1fr;gap:.8rem}
.clip[data-judgment=correct]{border-left:6px solid #2e7d32}.clip[data-judgment=partly]{border-left:6px solid #f9a825}
.clip[data-judgment=wrong]{border-left:6px solid #c62828}
.caption{font-size:16px;font-weight:600;margin:.2rem 0}.meta{color:#555;font-size:12px}
img.spec{width:360px;display:block}img.frame{width:88px;margin:.2rem .2rem 0 0}
button{margin:.3rem .3rem 0 0;padding:.25rem .7rem}input.better{width:60%;margin-top:.3rem}
.status{font-size:12px;color:#555;margin-left:.5rem}.error{color:#c62828}
#estimate{font-weight:600}
"""

PAGE_JS = """
(function () {
  var list = document.getElementById("clips"), reviewer = document.getElementById("reviewer");
  var estimate = document.getElementById("estimate"), progress = document.getElementById("progress");
  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) {
      if (k === "text") node.textContent = props[k]; else node.setAttribute(k, props[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }
  function pct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%"; }
  function showEstimate(o) {
    estimate.textContent = o.judged ? "caption precision " + pct(o.precision) + " (95% CI " + pct(o.ci_low) +
      "–" + pct(o.ci_high) + ", " + o.judged + " judged, weighted to the corpus)" : "no judgments yet";
  }
  function count() {
    var done = list.querySelectorAll(".clip[data-judgment]:not([data-judgment=''])").length;
    progress.textContent = done + " of " + list.children.length + " clips judged";
  }
  function post(url, body) {
    return fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.error); return j; }); });
  }
  function card(clip) {
    var base = "/media/" + encodeURIComponent(clip.clip_id) + "/";
    var status = el("span", {"class": "status"});
    var better = el("input", {"class": "better", "type": "text", "placeholder": "a better caption (optional)"});
    var node = el("article", {"class": "clip", "data-clip": clip.clip_id, "data-judgment": ""});
    function mark(j) {
      node.setAttribute("data-judgment", j.judgment);
      status.textContent = "judged " + j.judgment + " by " + j.reviewer + " at " + j.time +
        (j.better_caption ? " — better caption: " + j.better_caption : "");
      status.className = "status";
      count();
    }
    var buttons = ["correct", "partly", "wrong"].map(function (judgment) {
      var b = el("button", {"type": "button", "data-mark": judgment, "text": judgment});
      b.addEventListener("click", function () {
        post("/api/judgments", {clip_id: clip.clip_id, caption_sha256: clip.caption_sha256, judgment: judgment,
                                reviewer: reviewer.value, better_caption: better.value})
          .then(function (r) { mark(r.saved); showEstimate(r.estimate); })
          .catch(function (e) { status.textContent = e.message; status.className = "status error"; });
      });
      return b;
    });
    var frames = clip.frames.map(function (f) { return el("img", {"class": "frame", "src": base + f, "alt": f}); });
    var media = el("div", {}, [
      el("audio", {"controls": "", "preload": "metadata", "src": base + "audio.flac"}),
      el("img", {"class": "spec", "src": base + "spec.png", "alt": "log-mel spectrogram"}),
      el("div", {}, frames)]);
    var text = el("div", {}, [
      el("p", {"class": "caption", "text": clip.caption}),
      el("p", {"class": "meta", "text": clip.clip_id + " · " + clip.stratum + " · " + (clip.expert || "") +
               " · CLAP " + (clip.score === null ? "—" : clip.score.toFixed(3)) + " · labels: " +
               (clip.labels.join(", ") || "—")}),
      el("div", {}, buttons.concat([status])), better]);
    node.appendChild(media); node.appendChild(text);
    if (clip.judgment) { mark(clip.judgment); better.value = clip.judgment.better_caption || ""; }
    return node;
  }
  fetch("/api/sample").then(function (r) { return r.json(); }).then(function (data) {
    data.clips.forEach(function (clip) { list.appendChild(card(clip)); });
    count();
    document.body.setAttribute("data-ready", "true");
    return fetch("/api/estimate").then(function (r) { return r.json(); });
  }).then(function (e) { showEstimate(e.overall); });
  document.getElementById("export").addEventListener("click", function () {
    var out = document.getElementById("export-result");
    post("/api/export", {}).then(function (r) {
      out.textContent = "exported " + r.judgments + " judgment(s), " + r.overrides + " override(s)";
      out.setAttribute("data-done", "true");
    }).catch(function (e) { out.textContent = e.message; });
  });
})();
"""


def page_html(reviewer: str = "") -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        "<title>Caption review</title>\n"
        f"<style>{PAGE_CSS}</style></head>\n<body>\n<header><h1>Caption review</h1>\n"
        '<p><a href="/report/index.html">the report</a> · '
        f'<label>reviewer <input id="reviewer" value="{html.escape(reviewer, quote=True)}"></label> · '
        '<span id="progress"></span> · <span id="estimate"></span> · '
        '<button type="button" id="export">export</button> <span id="export-result"></span></p>\n'
        "<p>Listen, look, read the caption: <b>correct</b> if it describes what is heard, <b>partly</b> if it "
        "misses or adds something, <b>wrong</b> otherwise. A typed caption replaces it in the shards; a "
        "wrong one is replaced by the next candidate the selection policy accepts.</p></header>\n"
        f'<main id="clips"></main>\n<script>{PAGE_JS}</script>\n</body></html>\n'
    )
