"""Starvation probes: does a one-second recognition still get through while hostile requests hold the server?

Issue 26 found two ways for a few small requests to starve everyone else:

* ``decode``: four concurrent uploads of a silent 8-channel 192 kHz FLAC of
  900 s (~1.4 MB each, made with soundfile) each kept a decode worker busy for
  ~15 s before failing ``audio_too_long``; 28 of 30 one-second probes got 503.
* ``slow-url``: five ``audio_url`` downloads from a server that trickles one
  byte per second held every admission slot for the whole ``E2V_URL_TIMEOUT_S``
  (``E2V_MAX_QUEUE=4``, ``E2V_URL_ALLOW=127.0.0.1``); 20 of 20 probes got 503.

The script starts ``emotion2vec-webui serve`` on a free loopback port with the
tiny random-weight model (``make-test-model --size tiny``), starts the attack
from 127.0.0.1, and sends one probe a second from another loopback address
(``--probe-from``, 127.0.0.2, so per-client limits see two clients):
``POST /api/v1/recognize`` with a one-second 16 kHz tone, each probe on its own
thread, so a slow answer does not delay the next probe. It prints the probes'
latency (p50, p95, max; all probes, and the 200s alone), their status counts,
when the first 200 came, and what the attack requests got. ``--output``
appends the figures to a markdown file.

A scenario is a :class:`Scenario`: the server's settings, an ``attack``
(started in threads, told when the probes are done) and how many probes.
Adding one is adding a function to ``SCENARIOS``.

Before and after: ``--src DIR`` runs the server from another checkout (DIR
first on ``PYTHONPATH``, and the working directory). The venv holds an editable
install of this checkout, so the script checks which package the server really
imported (it prints ``emotion2vec_webui.__file__`` first thing, read back from
the server log) and stops if it is not under DIR. For example::

    git worktree add /tmp/e2v-before <commit before the fix>
    python benchmarks/starvation_probes.py --scenario decode --src /tmp/e2v-before --label before \\
        --output benchmarks/starvation_probes.md
    python benchmarks/starvation_probes.py --scenario decode --label after --output benchmarks/starvation_probes.md
    git worktree remove /tmp/e2v-before

The script itself, the tiny model and the probe client always come from this
checkout; only the server runs the code under test.
"""

from __future__ import annotations

import argparse
import http.server
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server_util import ServerProcess, server_env  # noqa: E402

FLAC_SECONDS, FLAC_RATE, FLAC_CHANNELS = 900, 192000, 8


# -- the server, from this checkout or another ----------------------------------------------------


class SourceServer(ServerProcess):
    """:class:`ServerProcess` whose package comes from ``src`` (None: the installed one), and says which."""

    MARK = "e2v-source:"

    def __init__(self, env: dict[str, str], src: Path | None = None, **kwargs) -> None:
        super().__init__(env, **kwargs)
        self.src = src
        if src is not None:
            self.env["PYTHONPATH"] = os.pathsep.join([str(src), self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep)

    def __enter__(self) -> SourceServer:
        code = (
            "import sys, emotion2vec_webui as m; print('" + self.MARK + "', m.__file__, flush=True); "
            "from emotion2vec_webui.cli.main import main; sys.exit(main(sys.argv[1:]))"
        )
        self._out = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            env=self.env,
            cwd=str(self.src) if self.src else None,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait("/healthz", 120)
            self.wait("/readyz", 300)
        except BaseException:
            self.__exit__()
            raise
        return self

    def imported_from(self) -> str:
        for line in self.log_path.read_text("utf-8", errors="replace").splitlines():
            if line.startswith(self.MARK):
                return line[len(self.MARK) :].strip()
        return "?"


# -- probes ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # HTTP status (0: no answer: connection error or client timeout)
    code: str  # the error code, "" for a 200
    seconds: float  # from sending to the answer
    sent_at: float  # seconds after the attack started


def _client(source: str, timeout: float):
    """An HTTP client whose connections come from ``source`` (a loopback address: the server sees another client)."""
    import httpx

    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=timeout)


def post_file(url: str, name: str, data: bytes, t0: float, timeout: float = 300, source: str = "127.0.0.1") -> Answer:
    import httpx

    sent = time.perf_counter()
    try:
        with _client(source, timeout) as client:
            r = client.post(url + "/api/v1/recognize", files={"file": (name, data)})
    except httpx.HTTPError as exc:
        return Answer(0, type(exc).__name__, time.perf_counter() - sent, sent - t0)
    return Answer(r.status_code, _code(r), time.perf_counter() - sent, sent - t0)


def post_json(url: str, body: dict, t0: float, timeout: float = 300, source: str = "127.0.0.1") -> Answer:
    import httpx

    sent = time.perf_counter()
    try:
        with _client(source, timeout) as client:
            r = client.post(url + "/api/v1/recognize", json=body)
    except httpx.HTTPError as exc:
        return Answer(0, type(exc).__name__, time.perf_counter() - sent, sent - t0)
    return Answer(r.status_code, _code(r), time.perf_counter() - sent, sent - t0)


def _code(r) -> str:
    if r.status_code == 200:
        return ""
    try:
        return r.json()["error"]["code"]
    except Exception:
        return "?"


def send_probes(url: str, probe: bytes, count: int, every_s: float, t0: float, source: str) -> list[Answer]:
    """``count`` probes, one every ``every_s`` from now, each on its own thread, from ``source``; all answers."""
    answers: list[Answer | None] = [None] * count

    def one(i: int) -> None:
        answers[i] = post_file(url, "probe.wav", probe, t0, source=source)

    threads = []
    start = time.perf_counter()
    for i in range(count):
        time.sleep(max(0.0, start + i * every_s - time.perf_counter()))
        threads.append(threading.Thread(target=one, args=(i,), daemon=True))
        threads[-1].start()
    for th in threads:
        th.join()
    return [a for a in answers if a is not None]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def summary(answers: list[Answer]) -> dict:
    latencies = [a.seconds for a in answers]
    ok = [a for a in answers if a.status == 200]
    counts = Counter(f"{a.status} {a.code}".strip() for a in answers)
    return {
        "n": len(answers),
        "counts": dict(sorted(counts.items())),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": percentile(latencies, 0.95),
        "max": max(latencies, default=float("nan")),
        "ok_p50": statistics.median([a.seconds for a in ok]) if ok else float("nan"),
        "first_ok_s": min((a.sent_at + a.seconds for a in ok), default=float("nan")),
    }


# -- scenarios ------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    settings: dict[str, str]  # E2V_* suffix → value (server_env)
    attack: Callable  # attack(url, t0, stop: threading.Event) -> list[Answer], run on a thread
    describe: str
    probes: int = 30
    every_s: float = 1.0
    cleanup: list[Callable] = field(default_factory=list)


def hostile_flac(cache: Path, declared: bool) -> bytes:
    """The silent 8-channel 192 kHz FLAC of 900 s, made with soundfile (kept in ``cache``: ~12 s to make)."""
    path = cache / f"hostile-{FLAC_SECONDS}s-{FLAC_RATE}-{FLAC_CHANNELS}ch{'' if declared else '-undeclared'}.flac"
    if not path.exists():
        if declared:
            import numpy as np
            import soundfile as sf

            block = np.zeros((FLAC_RATE * 10, FLAC_CHANNELS), np.int16)
            tmp = path.with_suffix(".tmp")
            with sf.SoundFile(tmp, "w", FLAC_RATE, FLAC_CHANNELS, subtype="PCM_16", format="FLAC") as f:
                for _ in range(FLAC_SECONDS // 10):
                    f.write(block)
            tmp.replace(path)
        else:  # STREAMINFO's total samples 0 ("unknown", as a streaming encoder writes): only decoding tells
            from tests.reliability.hostile_audio import silent_flac

            path.write_bytes(silent_flac(FLAC_SECONDS, FLAC_RATE, FLAC_CHANNELS, declare_length=False))
    data = path.read_bytes()
    assert 0.5e6 < len(data) < 3e6, f"{path.name} is {len(data) / 1e6:.2f} MB, expected ~1.4 MB"
    return data


def decode_scenario(args, cache: Path) -> Scenario:
    data = hostile_flac(cache, declared=not args.undeclared)

    def attack(url: str, t0: float, stop: threading.Event) -> list[Answer]:
        answers: list[Answer] = []
        lock = threading.Lock()

        def one() -> None:
            for _ in range(args.rounds):
                a = post_file(url, "hostile.flac", data, t0, timeout=600)
                with lock:
                    answers.append(a)
                if stop.is_set():
                    return

        threads = [threading.Thread(target=one, daemon=True) for _ in range(args.uploads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return answers

    kind = "undeclared length (STREAMINFO total 0)" if args.undeclared else "length declared"
    return Scenario(
        "decode",
        {"max_upload_mb": 4},
        attack,
        f"{args.uploads} concurrent uploads ({args.rounds} each, one after the other) of a silent "
        f"{FLAC_CHANNELS}-channel {FLAC_RATE // 1000} kHz FLAC of {FLAC_SECONDS} s ({len(data) / 1e6:.2f} MB, "
        f"{kind}) from 127.0.0.1; `E2V_MAX_UPLOAD_MB=4`, the rest at defaults (`E2V_MAX_DURATION_S=600`, "
        "`E2V_DECODE_WORKERS=2`, `E2V_MAX_QUEUE=32`)",
        probes=args.probes,
    )


class TrickleHandler(http.server.BaseHTTPRequestHandler):
    """Headers for a 1 MB WAV at once, then one byte a second until the client goes away."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            for byte in b"RIFF" + b"\0" * ((1 << 20) - 4):
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(1.0)
        except OSError:
            return

    def log_message(self, *args) -> None:
        pass


def slow_url_scenario(args, cache: Path) -> Scenario:
    trickle = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TrickleHandler)
    trickle.daemon_threads = True
    threading.Thread(target=trickle.serve_forever, daemon=True).start()
    audio_url = f"http://127.0.0.1:{trickle.server_address[1]}/slow.wav"

    def attack(url: str, t0: float, stop: threading.Event) -> list[Answer]:
        answers: list[Answer] = []
        lock = threading.Lock()

        def one() -> None:
            a = post_json(url, {"audio_url": audio_url}, t0, timeout=600)
            with lock:
                answers.append(a)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(args.downloads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return answers

    return Scenario(
        "slow-url",
        {"max_queue": 4, "url_allow": "127.0.0.1"},
        attack,
        f"{args.downloads} concurrent `audio_url` requests from 127.0.0.1 to a local server that sends its "
        "headers, then one byte a second; `E2V_MAX_QUEUE=4`, `E2V_URL_ALLOW=127.0.0.1`, the rest at defaults "
        "(`E2V_URL_TIMEOUT_S=60`)",
        probes=args.probes,
        cleanup=[trickle.shutdown],
    )


SCENARIOS: dict[str, Callable[..., Scenario]] = {"decode": decode_scenario, "slow-url": slow_url_scenario}


# -- running one ----------------------------------------------------------------------------------


def machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        from emotion2vec_webui.bench.benchmark import cpu_model

        cpu = cpu_model()
    except Exception:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}"
    )


def run(args) -> dict:
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    model = args.model or str(cache / "tiny-model")
    if not (Path(model) / "config.yaml").exists() and not args.model:
        subprocess.run(
            [sys.executable, "-m", "emotion2vec_webui", "make-test-model", model, "--size", "tiny"],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
    from emotion2vec_webui.audio.signals import tone, write_audio

    probe = write_audio(cache / "probe-1s.wav", tone(1.0, 16000), 16000, "wav").read_bytes()
    scenario = SCENARIOS[args.scenario](args, cache)
    root = Path(tempfile.mkdtemp(prefix=f"e2v-starve-{scenario.name}-"))
    env = server_env(model, root, **scenario.settings)
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    src = Path(args.src).resolve() if args.src else None
    with SourceServer(env, src) as srv:
        where = srv.imported_from()
        expected = str(src or ROOT)
        print(f"server imports emotion2vec_webui from {where}")
        if not where.startswith(expected + os.sep):
            raise SystemExit(f"the server imported {where}, not the code under {expected}")
        post_file(srv.url, "warm.wav", probe, time.perf_counter())  # model and decode workers warm
        stop = threading.Event()
        attack_answers: list[Answer] = []
        t0 = time.perf_counter()
        attacker = threading.Thread(target=lambda: attack_answers.extend(scenario.attack(srv.url, t0, stop)))
        attacker.start()
        time.sleep(0.5)  # the attack is under way
        probes = send_probes(srv.url, probe, scenario.probes, scenario.every_s, t0, args.probe_from)
        stop.set()
        attacker.join(900)
        alive = srv.alive()
    for fn in scenario.cleanup:
        fn()
    return {
        "scenario": scenario.name,
        "describe": scenario.describe,
        "source": where,
        "probe_from": args.probe_from,
        "probes": summary(probes),
        "attack": summary(attack_answers),
        "alive": alive,
    }


def report(result: dict, label: str, command: str) -> str:
    p, a = result["probes"], result["attack"]
    counts = ", ".join(f"{k}: {v}" for k, v in p["counts"].items())
    attack_counts = ", ".join(f"{k}: {v}" for k, v in a["counts"].items())
    return "\n".join(
        [
            f"### {result['scenario']}: {label}",
            "",
            f"`{command}` on {machine()}, {time.strftime('%Y-%m-%d')}; server code: `{result['source']}`.",
            f"Attack: {result['describe']}.",
            "",
            f"Probes from {result['probe_from']}, one a second, each a one-second 16 kHz WAV.",
            "",
            "| probes | status | p50 | p95 | max | p50 of the 200s | first 200 after |",
            "|---|---|---|---|---|---|---|",
            f"| {p['n']} | {counts} | {p['p50']:.2f} s | {p['p95']:.2f} s | {p['max']:.2f} s | "
            f"{p['ok_p50']:.2f} s | {p['first_ok_s']:.1f} s |",
            "",
            f"Attack requests: {attack_counts}; their time p50 {a['p50']:.2f} s, max {a['max']:.2f} s. "
            f"Server alive at the end: {'yes' if result['alive'] else 'NO'}.",
            "",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="decode")
    p.add_argument("--src", help="run the server from this checkout (e.g. a git worktree of an older commit)")
    p.add_argument("--model", help="model directory (default: a tiny random-weight one, made once in --cache)")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "e2v-starvation"),
                   help="where the hostile files and the tiny model are kept between runs")  # fmt: skip
    p.add_argument("--probes", type=int, default=30, help="one-second probes, one a second (default 30)")
    p.add_argument("--uploads", type=int, default=4, help="decode: concurrent hostile uploads (default 4)")
    p.add_argument("--rounds", type=int, default=1, help="decode: uploads per attacker, one after the other")
    p.add_argument("--undeclared", action="store_true", help="decode: FLACs that do not declare their length")
    p.add_argument("--downloads", type=int, default=5, help="slow-url: concurrent trickling downloads (default 5)")
    p.add_argument("--probe-from", default="127.0.0.2",
                   help="the probes' source address (the attack comes from 127.0.0.1: per-client limits see two clients)")  # fmt: skip
    p.add_argument("--env", action="append", default=[], help="extra server setting KEY=VALUE (repeatable)")
    p.add_argument("--label", default="", help="a name for this run in the report (before, after, a commit)")
    p.add_argument("--output", type=Path, help="append the figures to this markdown file")
    args = p.parse_args()

    result = run(args)
    command = "python benchmarks/starvation_probes.py " + " ".join(sys.argv[1:])
    text = report(result, args.label or ("--src " + args.src if args.src else "this checkout"), command)
    print(text)
    print(json.dumps({k: result[k] for k in ("probes", "attack")}, indent=1))
    if args.output:
        with open(args.output, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if result["alive"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
