"""Decode untrusted audio in a few spawned worker processes, so one bad file costs one error, not the process.

One concept: the pool, its workers' loop and the wire between them share one
protocol (job, answer, limits) and one life cycle; split, each half would only
make sense read beside the other.

FFmpeg and libsndfile are native code: a file that crashes them (PyAV 18.1
segfaulted on planar audio with 8+ channels, see ``audio/readers.py``) or makes them
allocate gigabytes would otherwise take the server, the CLI or a batch run down
with it. :func:`decode_guarded` runs :func:`decode.decode_audio` in one of
``E2V_DECODE_WORKERS`` worker processes instead:

* workers are started with the ``spawn`` method (no inherited threads or
  locks), lazily or ahead of time (:meth:`DecoderPool.prestart`, called when
  the server starts), reused from job to job, and replaced when one dies;
* each job runs under an address-space limit (``RLIMIT_AS``): the worker's
  idle size plus ``E2V_DECODE_MEMORY_MB``, or, when that is 0, an allowance
  sized for the job (256 MB + twice the input + four times the longest 16 kHz
  output the duration cap allows). Hitting it → ``audio_too_large_decoded``;
* the parent enforces a wall-clock limit per job (``E2V_DECODE_TIMEOUT_S``):
  past it the worker is killed and replaced → ``audio_too_large_decoded``;
* a worker that dies mid-job (a segfault, SIGKILL) → ``audio_undecodable``
  ("the decoder crashed") for that file only;
* callers wait for a free worker, so at most ``E2V_DECODE_WORKERS`` decodes
  hold memory at once, whatever the number of requests in flight.

A job is a header (path or None, name, :class:`AudioLimits`,
:class:`DecodeOptions` — stream and channel choice — and the memory
allowance), then the bytes when there is no path. A path is opened by the
worker itself; bytes are sent over the pipe. The
result comes back over the same pipe: a small pickled header, then the
float32 samples received straight into a numpy array (``recv_bytes_into``,
no extra copy). Overhead against :func:`decode.decode_audio` in the calling
process, measured by ``benchmarks/decode_bombs.py --overhead`` (2-core VM
shared with other work, median of 7, 48 kHz stereo FLAC sent as bytes): 5 s
clip +4.8 ms (11.9 → 16.7 ms); 600 s clip (46 MB in, 38 MB back) +143 ms
(1.09 → 1.23 s; an earlier run measured −46 ms: the machine is noisy). The
pipe alone moves 46 MB in and 38 MB back in 0.14–0.17 s (min–median of 7).
A worker starts in ~0.45 s (spawn, imports, a warm-up decode) and idles at
60 MB RSS.
``E2V_DECODE_WORKERS=0`` decodes in the calling process (no guard).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emotion2vec_webui.errors import AudioError, E2VError

if TYPE_CHECKING:
    from emotion2vec_webui.audio.decode import AudioLimits, DecodedAudio
    from emotion2vec_webui.audio.format import DecodeOptions

log = logging.getLogger(__name__)

MB = 1024 * 1024
_READY_TIMEOUT_S = 60.0  # a worker that has not started by then is a broken install
# Tests only: when this is "1", a worker given bytes (or a file) starting with b"E2V-TEST:<action>" acts it
# out (segv, kill, hang, alloc), so the guard can be tested without a file that really crashes FFmpeg.
_TEST_HOOK_ENV = "_E2V_DECODER_TEST_HOOK"


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 2  # E2V_DECODE_WORKERS: decode processes (0: decode in the calling process, unguarded)
    timeout_s: float = 120.0  # E2V_DECODE_TIMEOUT_S: wall-clock limit per file, then the worker is killed
    memory_mb: float = 0.0  # E2V_DECODE_MEMORY_MB: address space a job may add to an idle worker (0: per job)

    @classmethod
    def from_env(cls) -> PoolConfig:
        def number(name: str, default: float) -> float:
            raw = os.environ.get(name, "").strip()
            try:
                return float(raw) if raw else default
            except ValueError as exc:
                raise SystemExit(f"{name}={raw!r} is not a number") from exc

        return cls(
            workers=max(0, int(number("E2V_DECODE_WORKERS", cls.workers))),
            timeout_s=max(0.1, number("E2V_DECODE_TIMEOUT_S", cls.timeout_s)),
            memory_mb=max(0.0, number("E2V_DECODE_MEMORY_MB", cls.memory_mb)),
        )


def job_allowance(limits: AudioLimits, input_bytes: int) -> int:
    """Bytes of address space one decode may add to an idle worker when E2V_DECODE_MEMORY_MB is 0."""
    from emotion2vec_webui.audio.format import SAMPLE_RATE

    output = int(limits.max_duration_s * SAMPLE_RATE) * 4
    return 256 * MB + 2 * input_bytes + 4 * output


# -- the parent side ------------------------------------------------------------------------------


class _Worker:
    """One spawned decode process and its end of the pipe."""

    def __init__(self, ctx) -> None:
        parent_end, child_end = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child_end,), name="e2v-decoder", daemon=True)
        self.process.start()
        child_end.close()
        self.conn = parent_end
        if not self.conn.poll(_READY_TIMEOUT_S):
            self.kill()
            raise E2VError("internal_error", "A decode worker did not start. / 解码进程未能启动。")
        try:
            self.idle_vm = self.conn.recv()[1]  # ("ready", VmSize in bytes)
        except (EOFError, OSError) as exc:
            self.kill()
            raise E2VError("internal_error", "A decode worker failed to start. / 解码进程启动失败。") from exc

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(2)
        self.kill()


class DecoderPool:
    """A few reusable decode processes; :meth:`decode` is safe to call from many threads.

    Args:
        config: pool size, per-job timeout and memory allowance.
    """

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig.from_env()
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = threading.BoundedSemaphore(max(1, self.config.workers))
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self.replaced = 0  # workers that died or were killed (crash, timeout); metrics and tests read it

    def prestart(self, wait: bool = False) -> None:
        """Start the workers now (in a background thread unless ``wait``), so no request pays for it."""
        if self.config.workers <= 0:
            return

        def fill() -> None:
            for _ in range(self.config.workers):
                if self._closed or _exiting():
                    return
                if not self._slots.acquire(blocking=False):
                    return
                try:
                    worker = _Worker(self._ctx)
                    self._put_back(worker)
                except Exception:  # a later decode retries and reports it
                    if self._closed or _exiting():  # the exit killed the worker it was starting: nothing failed
                        log.debug("decode worker pre-start cut short by shutdown", exc_info=True)
                    else:
                        log.exception("could not pre-start a decode worker")
                    return
                finally:
                    self._slots.release()

        if wait:
            fill()
        else:
            threading.Thread(target=fill, name="e2v-decoder-prestart", daemon=True).start()

    def worker_pids(self) -> list[int]:
        """Process ids of the idle workers (benchmarks and tests)."""
        with self._lock:
            return [w.pid for w in self._idle if w.pid is not None]

    def decode(
        self,
        source: str | os.PathLike | bytes,
        *,
        source_name: str | None = None,
        limits: AudioLimits | None = None,
        options: DecodeOptions | None = None,
    ) -> DecodedAudio:
        """Decode like :func:`decode.decode_audio` (same ``limits`` and ``options``), in a worker process.

        Raises:
            AudioError: every code of ``decode_audio``, plus ``audio_undecodable``
                when the decoder crashed and ``audio_too_large_decoded`` when it
                ran past the memory or time allowed.
        """
        from emotion2vec_webui.audio.decode import AudioLimits, decode_audio

        limits = limits or AudioLimits()
        if self.config.workers <= 0:
            return decode_audio(source, source_name=source_name, limits=limits, options=options)
        if isinstance(source, (bytes, bytearray, memoryview)):
            data, path, name = memoryview(source).cast("B"), None, source_name or "upload"
        else:
            data, path = None, os.path.abspath(source)
            name = source_name or Path(source).name
        header = {"path": path, "name": name, "limits": limits, "options": options, "memory_mb": self.config.memory_mb}
        return self._run(header, data)

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise E2VError("internal_error", "The decoder is shut down. / 解码器已关闭。")
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker
                self.replaced += 1
                worker.kill()
        return _Worker(self._ctx)

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self.replaced += 1

    def _put_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.close()

    def _run(self, header: dict, data: memoryview | None) -> DecodedAudio:
        name = header["name"]
        with self._slots:  # wait for a free worker: this bounds the decodes holding memory at once
            worker = self._take()
            timed_out = threading.Event()

            def on_timeout() -> None:
                timed_out.set()
                worker.process.kill()  # unblocks our send/recv with EOF or a broken pipe

            timer = threading.Timer(self.config.timeout_s, on_timeout)
            timer.daemon = True
            timer.start()
            try:
                worker.conn.send(header)
                if data is not None:
                    worker.conn.send_bytes(data)
                reply = worker.conn.recv()
                if reply[0] == "ok":
                    meta = reply[1]
                    import numpy as np

                    waveform = np.empty(meta.pop("samples"), np.float32)
                    if waveform.size:
                        worker.conn.recv_bytes_into(waveform)
            except (EOFError, OSError) as exc:
                timer.cancel()
                self._retire(worker)
                if timed_out.is_set():
                    raise AudioError(
                        "audio_too_large_decoded",
                        f"{name} took longer than {self.config.timeout_s:g} s to decode (E2V_DECODE_TIMEOUT_S). "
                        f"/ {name} 解码超时。",
                    ) from exc
                raise AudioError(
                    "audio_undecodable",
                    f"{name} cannot be decoded: the decoder crashed ({_exit_reason(worker.process.exitcode)}). "
                    f"/ 解码器崩溃，无法解码 {name}。",
                ) from exc
            except BaseException:
                timer.cancel()
                self._retire(worker)  # interrupted mid-conversation: the pipe is out of step
                raise
            timer.cancel()
            if timed_out.is_set():  # fired just as the reply arrived: the worker is dead anyway
                self._retire(worker)
            else:
                self._put_back(worker)
        if reply[0] == "error":
            raise AudioError(reply[1], reply[2])
        from emotion2vec_webui.audio.decode import DecodedAudio

        return DecodedAudio(waveform=waveform, **meta)

    def close(self) -> None:
        """Same as :meth:`shutdown` (for ``contextlib.closing``)."""
        self.shutdown()

    def shutdown(self) -> None:
        """Stop every idle worker; busy ones stop when their job ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


def _exiting() -> bool:
    """Whether this process is shutting down.

    At exit, multiprocessing's own handler (``multiprocessing.util._exit_function``, which sets
    ``util.is_exiting()`` first) terminates every daemon child, a worker that the background
    :meth:`DecoderPool.prestart` is still waiting for included: that worker's start then "fails"
    with EOF, which is the exit, not a broken install, and is not worth a traceback.
    """
    from multiprocessing import util

    return bool(util.is_exiting() or sys.is_finalizing())


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "no exit status"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


_pool: DecoderPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> DecoderPool:
    """The process-wide pool, configured from the environment on first use; shut down at exit."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DecoderPool()
            atexit.register(_pool.shutdown)
        return _pool


def prestart() -> None:
    """Start the process-wide pool's workers in the background (the server calls this at start-up)."""
    get_pool().prestart()


def decode_guarded(
    source: str | os.PathLike | bytes,
    *,
    source_name: str | None = None,
    limits: AudioLimits | None = None,
    options: DecodeOptions | None = None,
) -> DecodedAudio:
    """:func:`decode.decode_audio` for untrusted input, in the process-wide pool (see the module docstring)."""
    return get_pool().decode(source, source_name=source_name, limits=limits, options=options)


# -- the worker side ------------------------------------------------------------------------------


def _vm_size() -> int | None:
    """This process's address-space size in bytes (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _warm_up() -> None:
    """Decode a short wav and an Ogg/Vorbis clip, so lazy library set-up is part of the idle size."""
    import io

    import numpy as np
    import soundfile as sf

    from emotion2vec_webui.audio.decode import decode_audio

    tone = (0.1 * np.sin(np.arange(8000) / 10)).astype(np.float32)
    for fmt in ("WAV", "OGG"):
        buf = io.BytesIO()
        sf.write(buf, tone, 8000, format=fmt)
        decode_audio(buf.getvalue(), source_name="warm-up")


def _worker_main(conn) -> None:
    # One thread per library: fewer threads, a smaller and steadier address space.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent; it shuts us down
    from emotion2vec_webui.audio.decode import decode_audio

    try:
        import resource
    except ImportError:  # not Unix: no limit, the timeout still applies
        resource = None
    _warm_up()
    idle_vm = _vm_size()
    conn.send(("ready", idle_vm))
    hook = os.environ.get(_TEST_HOOK_ENV) == "1"
    while True:
        try:
            header = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if header is None:
            return
        data = conn.recv_bytes() if header["path"] is None else None
        name, limits = header["name"], header["limits"]
        allowance = int(header["memory_mb"] * MB) or job_allowance(
            limits, len(data) if data is not None else _file_size(header["path"])
        )
        limited = resource is not None and idle_vm is not None
        if limited:
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            soft = idle_vm + allowance
            resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
        try:
            if hook:
                _test_action(data if data is not None else _head(header["path"]))
            decoded = decode_audio(
                data if data is not None else header["path"], source_name=name, limits=limits,
                options=header.get("options"),
            )  # fmt: skip
            reply = None
        except AudioError as exc:
            reply = ("error", exc.code, exc.message)
        except MemoryError:
            reply = (
                "error",
                "audio_too_large_decoded",
                f"{name} needs more than the {allowance / MB:.0f} MB a decode may use (E2V_DECODE_MEMORY_MB). "
                f"/ {name} 解码所需内存超出限制。",
            )
        except Exception as exc:  # a decoder bug on odd input: this file fails, the worker lives on
            reply = ("error", "audio_undecodable", f"{name} cannot be decoded: {type(exc).__name__}: {exc}")
        finally:
            data = None
            if limited:
                resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        if reply is not None:
            conn.send(reply)
            continue
        waveform = decoded.waveform
        meta = {f.name: getattr(decoded, f.name) for f in dataclasses.fields(decoded) if f.name != "waveform"}
        meta["samples"] = int(waveform.size)
        conn.send(("ok", meta))
        if waveform.size:
            conn.send_bytes(waveform)
        del decoded, waveform


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(32)
    except OSError:
        return b""


def _test_action(data: bytes) -> None:
    """Tests only (see ``_TEST_HOOK_ENV``): crash, die, hang or allocate as the bytes say."""
    if not data.startswith(b"E2V-TEST:"):
        return
    action = data[len(b"E2V-TEST:") :].split(b"\n", 1)[0].strip()
    if action == b"segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == b"kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == b"hang":
        time.sleep(3600)
    elif action == b"alloc":  # MemoryError under the job's address-space limit → audio_too_large_decoded
        bytearray(64 * 1024 * MB)
