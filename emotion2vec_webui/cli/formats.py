"""``emotion2vec-webui formats``: the accepted audio and video formats (the list in ``audio/format.py``)."""

from __future__ import annotations

import argparse
import json

from emotion2vec_webui.cli.common import EXIT_OK


def add_parser(sub) -> None:
    """Add the ``formats`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "formats",
        help="list the accepted audio and video formats",
        description="List the accepted formats. Each is recognised by its content (magic bytes), not its name, and "
        "decoded without a system FFmpeg (soundfile, or PyAV's bundled FFmpeg with a demuxer we name). From a video "
        "the first audio stream is taken (--audio-stream picks another); --channels picks one channel.",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def run(args: argparse.Namespace) -> int:
    from emotion2vec_webui.audio.format import FORMATS

    if args.json:
        rows = [
            {"format": f.kind, "extensions": list(f.extensions), "decoder": "soundfile" if f.demuxer is None else
             f"pyav:{f.demuxer}", "description": f.description}
            for f in FORMATS
        ]  # fmt: skip
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return EXIT_OK
    print("Accepted formats / 支持的格式 (recognised by content, not by name / 按文件内容识别):")
    for f in FORMATS:
        decoder = "soundfile" if f.demuxer is None else f"FFmpeg {f.demuxer}"
        print(f"  {f.kind:<9} {' '.join(f.extensions):<34} {f.description}  [{decoder}]")
    return EXIT_OK
