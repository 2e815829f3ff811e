"""``recognize --speakers channels --report`` as a user runs it: report.html beside result.json, its numbers equal."""

from __future__ import annotations

import json
from pathlib import Path

from emotion2vec_webui.runs.report import SECTIONS, report_html
from tests.cli.test_cli import run_main
from tests.runs.test_report import Page


def test_recognize_report(tmp_path, tiny_model_dir, stereo_dialogue, capsys, monkeypatch):
    p = run_main(
        capsys, monkeypatch, "recognize", str(stereo_dialogue[0]), "--speakers", "channels", "--report", "-q",
        "--output-dir", str(tmp_path / "outputs"), env={"E2V_MODEL": str(tiny_model_dir)},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "turns.jsonl" in p.stdout and "report.html" in p.stdout
    report = Path(p.stdout.strip().splitlines()[-1].split("→", 1)[1].strip())
    result = json.loads((report.parent / "result.json").read_text("utf-8"))
    html = report.read_text("utf-8")
    assert html == report_html(result)  # the file is the page made from the run's result.json
    page = Page()
    page.feed(html)
    assert [a["id"] for tag, a in page.tags if tag == "section"] == list(SECTIONS)
    assert not [a for _, a in page.tags if any(k in a for k in ("src", "xlink:href"))]
    assert all(a["href"].startswith("#") for _, a in page.tags if "href" in a)
    turns = {attrs.get("data-speaker"): text for attrs, text in page.fields if attrs["data-field"] == "turns"}
    assert turns == {s["id"]: str(s["turns"]) for s in result["summary"]["speakers"]}
    assert (report.parent / "turns.jsonl").is_file()
