"""``emotion2vec-webui catalog sync|rebuild``: the run catalog (``<outputs>/.catalog.sqlite3``) brought in line with the folders."""

from __future__ import annotations

import argparse
import json
import sys

from emotion2vec_webui.cli.common import EXIT_OK, add_output_args, settings_from_args


def add_parser(sub) -> None:
    """Add the ``catalog`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "catalog",
        help="sync or rebuild the run catalog (the SQLite index History and GET /api/v1/runs read)",
        description="The run folders are the source of truth; the catalog (<outputs>/.catalog.sqlite3) indexes them "
        "for search and paging. sync: add the runs it does not know (a process killed between writing a run and "
        "its row) and drop rows whose folder is gone (deleted by hand) — what serve does at start. rebuild: read "
        "every run folder and batch folder again; a missing or corrupt catalog file is replaced (the corrupt one "
        "is kept as .catalog.sqlite3.corrupt). Safe while a server or a batch runs.",
    )
    p.add_argument("action", choices=["sync", "rebuild"], help="sync (quick, incremental) or rebuild (every folder)")
    add_output_args(p)
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")


def run(args: argparse.Namespace) -> int:
    from emotion2vec_webui.runs.catalog.run_index import catalog_for

    settings = settings_from_args(args)
    index = catalog_for(settings.output_dir)
    report = index.sync(full=args.action == "rebuild", check=True)
    if args.json:
        print(json.dumps({"catalog": str(index.path), **report.__dict__}))
        return EXIT_OK
    rate = f", {report.runs / report.seconds:.0f} runs/s" if args.action == "rebuild" and report.seconds > 0 else ""
    print(
        f"{index.path}: {report.runs} runs; {report.added} added, {report.removed} removed, {report.batches} batches "
        f"read in {report.seconds:.2f} s{rate}{' (built anew)' if report.rebuilt else ''} / 共 {report.runs} 个运行；"
        f"新增 {report.added}，移除 {report.removed}，读取 {report.batches} 个批量，用时 {report.seconds:.2f} 秒",
        file=sys.stdout,
    )
    return EXIT_OK
