"""The report folder: sections, per-source content, relative links that resolve, escaping, determinism."""

from __future__ import annotations

import json
import re
from html import escape as html_escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image
from report_render_fixture import SOURCES, TABLE5, XSS, build_report

from pipelines.report.page import WORST_FLAGS
from pipelines.report.render import SECTIONS, render


class _Links(HTMLParser):
    """Every src/href, the ids, the <script> count and the listening rows' highlighted candidates."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.scripts = 0
        self.selected = 0
        self.scopes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        self.ids.add(attrs.get("id"))
        self.scripts += tag == "script"
        self.selected += tag == "li" and attrs.get("class") == "selected"
        if "data-scope" in attrs:
            self.scopes.add(attrs["data-scope"])


def _parse(index: Path) -> _Links:
    parser = _Links()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    report = build_report(root, missing_audio=True)
    first = render(report, root / "one")
    second = render(json.loads(json.dumps(report)), root / "two")
    return report, first, second


def test_every_section_is_on_the_page_in_order(rendered):
    _, index, _ = rendered
    html = index.read_text(encoding="utf-8")
    assert _parse(index).ids >= set(SECTIONS)
    positions = [html.index(f'<section id="{sid}">') for sid in SECTIONS]
    assert positions == sorted(positions)


def test_each_source_has_rows_and_a_block_in_every_aggregate_section(rendered):
    _, index, _ = rendered
    html = index.read_text(encoding="utf-8")
    scopes = _parse(index).scopes
    assert scopes == {"all", "src01-alpha", "src02-beta-q"}
    for sid in ("availability", "scores", "distillation", "labels", "text", "artefacts", "composition"):
        section = html.split(f'<section id="{sid}">')[1].split("</section>")[0]
        for slug in scopes:
            assert f'data-scope="{slug}"' in section, (sid, slug)


def test_every_link_resolves_inside_the_folder(rendered):
    _, index, _ = rendered
    links = _parse(index).links
    assert len(links) >= 2 + 3 * 6 + 2 + 2 + 2  # report.json, plots, audio, spectrograms, frames
    for link in links:
        if link.startswith("#"):
            continue
        assert not re.match(r"^([a-z]+:|/|\\)", link, re.I), link
        assert ".." not in link.split("/"), link
        assert (index.parent / link).is_file(), link


def test_no_external_reference_anywhere(rendered):
    _, index, _ = rendered
    for path, data in _files(index.parent).items():
        if path.endswith((".html", ".svg", ".json")):
            text = data.decode("utf-8")
            # SVG's namespace and DTD names (and RDF's) are identifiers, never fetched.
            text = re.sub(r'"http://(www\.w3\.org|purl\.org|creativecommons\.org)/[^"]*"', '""', text)
            assert not re.search(r"https?://|url\((?!#)|@import|//cdn", text), path  # url(#id): same file


def test_untrusted_text_is_escaped(rendered):
    _, index, _ = rendered
    html = index.read_text(encoding="utf-8")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert _parse(index).scripts == 1  # the page's own
    assert html_escape(SOURCES[1]) == "beta &lt;&amp;&gt; &quot;q&quot;" and html_escape(SOURCES[1]) in html
    assert "demo &lt;b&gt;" in html


def test_report_json_is_the_dict_sorted_with_indent_1(rendered):
    report, index, _ = rendered
    text = (index.parent / "report.json").read_text(encoding="utf-8")
    assert json.loads(text) == report
    assert text == json.dumps(report, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def test_two_renders_give_identical_bytes(rendered):
    _, first, second = rendered
    one, two = _files(first.parent), _files(second.parent)
    assert sorted(one) == sorted(two)
    assert sum(p.endswith(".svg") for p in one) == 18
    different = [p for p in one if one[p] != two[p]]
    assert different == []


def test_svgs_carry_no_date_and_text_as_paths(rendered):
    _, index, _ = rendered
    svg = (index.parent / "assets/plots/all/acceptance.svg").read_text(encoding="utf-8")
    assert "<dc:date>" not in svg
    assert "<text" not in svg  # glyphs drawn as paths: no font needed


def test_clip_files_are_copied_and_the_spectrogram_is_drawn(rendered):
    report, index, _ = rendered
    row = report["listening"][0]
    assets = index.parent / "assets"
    assert (assets / "audio/yt_abc-000.flac").read_bytes() == Path(row["audio"]).read_bytes()
    assert sf.info(assets / "audio/fs_123.flac").samplerate == 48_000
    for i, frame in enumerate(row["frames"]):
        assert (assets / f"frames/yt_abc-000_{i:02d}.jpg").read_bytes() == Path(frame).read_bytes()
    with Image.open(assets / "spec/yt_abc-000.png") as png:
        assert png.format == "PNG" and png.size == (360, 130)
        assert len(set(png.convert("L").getdata())) > 20  # an image, not a blank canvas


def test_a_clip_without_audio_gets_a_note_not_a_broken_player(rendered):
    _, index, _ = rendered
    html = index.read_text(encoding="utf-8")
    assert "audio not found:" in html
    assert "gone_1" in html and "assets/audio/gone_1" not in html and "assets/spec/gone_1" not in html
    listening = html.split('<section id="listening">')[1].split("</section>")[0]
    assert listening.count("<audio ") == 2


def test_the_selected_candidate_alone_is_highlighted(rendered):
    report, index, _ = rendered
    # Each row has the selected caption twice (captioning, retrieval): only the selected expert's counts.
    worst = [row for row in report["listening"] if set(row["flags"]) & set(WORST_FLAGS)]
    assert worst  # the worst captions repeat their listening rows at the top of the page
    assert _parse(index).selected == len(report["listening"]) + len(worst)
    html = index.read_text(encoding="utf-8")
    assert "<li class=selected><small>captioning · 0.5123</small>" in html


def test_figures_of_the_report_are_on_the_page(rendered):
    _, index, _ = rendered
    html = index.read_text(encoding="utf-8")
    t5 = html.split("Make-An-Audio App. A, Table 5")[1].split("</table>")[0]
    row = re.search(r'<tr data-scope="src01-alpha">(.*?)</tr>', t5).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells == [
        "alpha",
        *(
            ("—" if TABLE5[k] is None else f"{TABLE5[k]:.4f}")
            for k in ("label_text", "captioning", "retrieval", "selected")
        ),
    ]
    assert "configured threshold: <b>0.2500</b>" in html
    assert "video unavailable" in html and "a [MASK] rings" in html and "a man speaks" in html
    assert '<span class="flag">lowest_score</span>' in html
    assert "ab" * 32 in html  # the CLAP checkpoint's sha256 in the provenance


def test_the_distillation_section_shows_both_choices(rendered):
    """Make-An-Audio §3.2.1: captioning vs retrieval (overall and by who ranked the bank) and keep_human."""
    _, index, _ = rendered
    html = index.read_text(encoding="utf-8")
    section = html.split('<section id="distillation">')[1].split("</section>")[0]
    rows = re.findall(r'<tr data-scope="src01-alpha">(.*?)</tr>', section)
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows]
    # alpha has 12 clips: all, then ranked by the judge (10), then not (2); then its keep_human row
    assert [c[:6] for c in cells[:3]] == [
        ["alpha", "all", "12", "3", "9", "0.7500"],
        ["alpha", "ranked by the judge (CLAP audio–text, query: audio)", "10", "1", "9", "0.9000"],
        ["alpha", "not by the judge (text–text over labels, query: labels)", "2", "2", "0", "0.0000"],
    ]
    assert cells[0][6:] == ["0.3111", "0.4222", "0.1234", "0.3333", "0.4444", "0.5555"]
    assert cells[3] == ["alpha", "4", "0.3500", "0.3750", "-0.0250", "2", "0.5000", "captioning 1, label_text 1"]
    assert "Make-An-Audio App. A, Table 5" in section and "keep_human: false" in section


def test_a_report_json_without_distillation_still_renders(tmp_path):
    report = build_report(tmp_path)
    for scope in (report["totals"], *report["sources"].values()):
        scope.pop("distillation")
    html = render(report, tmp_path / "old").read_text(encoding="utf-8")
    assert "not in this report.json" in html.split('<section id="distillation">')[1].split("</section>")[0]


def test_a_second_render_into_the_folder_drops_clips_no_longer_sampled(tmp_path):
    report = build_report(tmp_path)
    out = tmp_path / "out"
    render(report, out)
    report["listening"] = report["listening"][1:]
    render(report, out)
    assert not (out / "assets/audio/yt_abc-000.flac").exists()
    assert (out / "assets/audio/fs_123.flac").exists()


def test_wrong_schema_and_nan_are_clear_errors(tmp_path):
    report = build_report(tmp_path)
    with pytest.raises(ValueError, match="t2a.report/1"):
        render({**report, "schema": "t2a.report/0"}, tmp_path / "a")
    report["totals"]["text"]["distinct_1"] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        render(report, tmp_path / "b")


def test_a_clip_id_that_is_a_path_is_refused(tmp_path):
    report = build_report(tmp_path)
    report["listening"][0]["clip_id"] = "../../etc"
    with pytest.raises(ValueError, match="bad clip id"):
        render(report, tmp_path / "out")
    assert not (tmp_path / "etc.flac").exists()
