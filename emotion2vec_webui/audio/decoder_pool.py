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
  output the duration cap allows). Hitting it → ``audio_too_large_decoded``:
  a ``MemoryError`` in the worker, or a worker that died while at its limit
  (FFmpeg segfaults on some failed allocations: a valid MP4 with 300 AC-3
  streams under 120 MB did). The parent samples the busy worker's address
  space (``/proc/<pid>/statm``, every 10 ms, every 2 ms past half the
  allowance); a death within 10 % (at least 2 MB) of the limit is the limit;
* a limit too small to decode one second of audio is refused when the server
  starts (:func:`prestart` → :meth:`DecoderPool.check_memory_limit`), with the
  size that would do, instead of failing every file;
* the parent enforces a wall-clock limit per job (``E2V_DECODE_TIMEOUT_S``):
  past it the worker is killed and replaced → ``audio_too_large_decoded``;
* a worker that dies mid-job (a segfault, SIGKILL) away from its memory limit
  → ``audio_undecodable`` ("the decoder crashed") for that file only;
* callers wait for a free worker, so at most ``E2V_DECODE_WORKERS`` decodes
  hold memory at once, whatever the number of requests in flight; they wait
  at most ``E2V_DECODE_WAIT_S`` (then ``overloaded``: the server's 503 with
  ``Retry-After``), so a burst of slow files cannot queue everyone else behind
  it without end. What a file may cost is bounded in ``readers.py`` (the
  input-sample budget).

Settings come from :class:`config.Settings` (``decode_*``), read once in ``config.py``.

A job is a header (path or None, name, :class:`AudioLimits`,
:class:`DecodeOptions` — stream and channel choice — and the memory
allowance in bytes), then the bytes when there is no path. A path is opened by the
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
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emotion2vec_webui.errors import AudioError, E2VError, OverloadedError

if TYPE_CHECKING:
    from emotion2vec_webui.audio.decode import AudioLimits, DecodedAudio
    from emotion2vec_webui.audio.format import DecodeOptions
    from emotion2vec_webui.config import Settings

log = logging.getLogger(__name__)

MB = 1024 * 1024
_READY_TIMEOUT_S = 60.0  # a worker that has not started by then is a broken install
# Tests only: when this is "1", a worker given bytes (or a file) starting with b"E2V-TEST:<action>" acts it
# out (segv, kill, hang, alloc), so the guard can be tested without a file that really crashes FFmpeg.
_TEST_HOOK_ENV = "_E2V_DECODER_TEST_HOOK"


_SAMPLE_SLOW_S, _SAMPLE_FAST_S = 0.010, 0.002  # how often a busy worker's address space is read (see above)


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 2  # E2V_DECODE_WORKERS: decode processes (0: decode in the calling process, unguarded)
    timeout_s: float = 120.0  # E2V_DECODE_TIMEOUT_S: wall-clock limit per file, then the worker is killed
    memory_mb: float = 0.0  # E2V_DECODE_MEMORY_MB: address space a job may add to an idle worker (0: per job)
    wait_s: float = 5.0  # E2V_DECODE_WAIT_S: the longest wait for a free worker, then ``overloaded``

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolConfig:
        return cls(
            workers=settings.decode_workers,
            timeout_s=settings.decode_timeout_s,
            memory_mb=settings.decode_memory_mb,
            wait_s=settings.decode_wait_s,
        )

    @classmethod
    def from_env(cls) -> PoolConfig:
        """The pool's settings as ``config.load_settings`` reads them from the environment."""
        from emotion2vec_webui.config import load_settings

        return cls.from_settings(load_settings())


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
        try:  # its address space, read while it works (Linux; elsewhere a death is always a crash)
            self._statm: int | None = os.open(f"/proc/{self.process.pid}/statm", os.O_RDONLY)
        except OSError:
            self._statm = None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def vm_size(self) -> int | None:
        """The worker's address-space size in bytes now (None: unknown, or the process is gone)."""
        if self._statm is None:
            return None
        try:
            pages = int(os.pread(self._statm, 64, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pages * _PAGE or None  # a dead (zombie) process reads 0

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()
        statm, self._statm = getattr(self, "_statm", None), None
        if statm is not None:
            os.close(statm)

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
                    with self._lock:
                        if len(self._idle) >= self.config.workers:  # started already (prestart called twice)
                            return
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
        wait_s: float | None = None,
    ) -> DecodedAudio:
        """Decode like :func:`decode.decode_audio` (same ``limits`` and ``options``), in a worker process.

        Args:
            wait_s: the longest wait for a free worker (None: ``E2V_DECODE_WAIT_S``; ``math.inf``: no bound,
                for work that has no client waiting, such as a training job).

        Raises:
            AudioError: every code of ``decode_audio``, plus ``audio_undecodable``
                when the decoder crashed and ``audio_too_large_decoded`` when it
                ran past the memory or time allowed.
            OverloadedError: every worker stayed busy for ``wait_s``.
        """
        from emotion2vec_webui.audio.decode import AudioLimits, decode_audio

        limits = limits or AudioLimits()
        if self.config.workers <= 0:
            return decode_audio(source, source_name=source_name, limits=limits, options=options)
        if isinstance(source, (bytes, bytearray, memoryview)):
            data, path, name = memoryview(source).cast("B"), None, source_name or "upload"
            size = data.nbytes
        else:
            data, path = None, os.path.abspath(source)
            name = source_name or Path(source).name
            size = _file_size(path)
        allowance = int(self.config.memory_mb * MB) or job_allowance(limits, size)
        header = {"path": path, "name": name, "limits": limits, "options": options, "allowance": allowance}
        return self._run(header, data, self.config.wait_s if wait_s is None else wait_s)

    def check_memory_limit(self, limits: AudioLimits) -> None:
        """Refuse an ``E2V_DECODE_MEMORY_MB`` too small to decode one second of audio (the server's start-up check).

        Decodes one second of 48 kHz stereo in a worker under the limit (that
        worker is kept for the first request). When it does not fit, the
        allowance that does is found by doubling, then halving the gap, and
        named in the message.

        Raises:
            SystemExit: with a one-line bilingual message (``serve`` prints it and stops).
        """
        if self.config.workers <= 0 or self.config.memory_mb <= 0:
            return
        data = _one_second_wav()
        if self._fits(data, limits, int(self.config.memory_mb * MB)):
            return
        low, high = self.config.memory_mb, max(8.0, 2 * self.config.memory_mb)
        while high < 65536 and not self._fits(data, limits, int(high * MB)):
            low, high = high, 2 * high
        for _ in range(4):
            mid = (low + high) / 2
            low, high = (low, mid) if self._fits(data, limits, int(mid * MB)) else (mid, high)
        needed, advised = math.ceil(high), int(math.ceil(high * 1.25 / 8) * 8)  # a quarter more for other formats
        mb, cap = f"{self.config.memory_mb:g}", f"{limits.max_duration_s:g}"
        raise SystemExit(
            f"E2V_DECODE_MEMORY_MB={mb} is too small: a decode worker cannot decode one second of audio under it "
            f"(it needed about {needed} MB with E2V_MAX_DURATION_S={cap}); set it to at least {advised}, or to 0 "
            f"to size it per file. / E2V_DECODE_MEMORY_MB={mb} 过小：解码进程在此限制下无法解码一秒音频"
            f"（E2V_MAX_DURATION_S={cap} 时约需 {needed} MB）；请设为至少 {advised}，或设为 0 按文件自动确定。"
        )

    def _fits(self, data: bytes, limits: AudioLimits, allowance: int) -> bool:
        header = {"path": None, "name": "one-second check", "limits": limits, "options": None, "allowance": allowance}
        try:
            self._run(header, memoryview(data), math.inf)
        except AudioError as exc:
            if exc.code != "audio_too_large_decoded":
                raise
            return False
        return True

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

    def _acquire(self, wait_s: float) -> None:
        """Take a worker slot, waiting at most ``wait_s``: this bounds the decodes holding memory at once."""
        if wait_s == math.inf:
            self._slots.acquire()
            return
        if not self._slots.acquire(timeout=max(0.0, wait_s)):
            n = self.config.workers
            raise OverloadedError(
                f"All {n} decoders are busy and none was free within {wait_s:g} s (E2V_DECODE_WAIT_S); "
                f"retry shortly. / 全部 {n} 个解码进程繁忙，{wait_s:g} 秒内没有空闲，请稍后重试。"
            )

    def _run(self, header: dict, data: memoryview | None, wait_s: float) -> DecodedAudio:
        name, allowance = header["name"], header["allowance"]
        self._acquire(wait_s)
        try:
            worker = self._take()
            timed_out = threading.Event()

            def on_timeout() -> None:
                timed_out.set()
                worker.process.kill()  # unblocks our send/recv with EOF or a broken pipe

            timer = threading.Timer(self.config.timeout_s, on_timeout)
            timer.daemon = True
            timer.start()
            peak = 0  # the largest address space seen while the worker decoded this job
            try:
                worker.conn.send(header)
                if data is not None:
                    worker.conn.send_bytes(data)
                peak = _watch(worker, allowance)
                reply = worker.conn.recv()
                if reply[0] == "ok":
                    meta = reply[1]
                    import numpy as np

                    waveform = np.empty(meta.pop("samples"), np.float32)
                    if waveform.size:
                        worker.conn.recv_bytes_into(waveform)
            except (EOFError, OSError) as exc:
                timer.cancel()
                peak = max(peak, getattr(exc, "e2v_peak", 0))
                self._retire(worker)
                if timed_out.is_set():
                    raise AudioError(
                        "audio_too_large_decoded",
                        f"{name} took longer than {self.config.timeout_s:g} s to decode (E2V_DECODE_TIMEOUT_S). "
                        f"/ {name} 解码超时（超过 {self.config.timeout_s:g} 秒）。",
                    ) from exc
                reason = _exit_reason(worker.process.exitcode)
                if _at_limit(worker, peak, allowance):
                    raise _out_of_memory(name, allowance, f"the decoder died at its memory limit: {reason}") from exc
                raise AudioError(
                    "audio_undecodable",
                    f"{name} cannot be decoded: the decoder crashed ({reason}). / 解码器崩溃，无法解码 {name}。",
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
        finally:
            self._slots.release()
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


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _watch(worker: _Worker, allowance: int) -> int:
    """Wait until the worker answers (or dies), sampling its address space; return the largest seen.

    A worker that dies raises EOFError from here with the peak attached (``e2v_peak``), so that
    :meth:`DecoderPool._run` can tell a death at the memory limit from a crash.
    """
    peak = 0
    half = (worker.idle_vm or 0) + allowance // 2
    while True:
        vm = worker.vm_size()
        if vm is not None:
            peak = max(peak, vm)
        try:
            if worker.conn.poll(_SAMPLE_FAST_S if peak > half else _SAMPLE_SLOW_S):
                return peak
        except (EOFError, OSError) as exc:
            exc.e2v_peak = peak  # type: ignore[attr-defined]
            raise
        if not worker.process.is_alive() and not worker.conn.poll(0):
            err = EOFError("the decode worker died")
            err.e2v_peak = peak  # type: ignore[attr-defined]
            raise err


def _at_limit(worker: _Worker, peak: int, allowance: int) -> bool:
    """Whether a worker that died had reached its address-space limit (within 10 %, at least 2 MB)."""
    if worker.idle_vm is None or peak <= 0:
        return False
    return peak >= worker.idle_vm + allowance - max(2 * MB, allowance // 10)


def _out_of_memory(name: str, allowance: int, why: str) -> AudioError:
    mb = allowance / MB
    return AudioError(
        "audio_too_large_decoded",
        f"{name} needs more than the {mb:.0f} MB a decode may use (E2V_DECODE_MEMORY_MB; {why}). "
        f"/ {name} 解码所需内存超出 {mb:.0f} MB 的限制。",
    )


def _one_second_wav() -> bytes:
    """One second of a 48 kHz stereo tone as 16-bit WAV bytes (the start-up check's input)."""
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(48000) / 48000
    x = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([x, x], axis=1), 48000, subtype="PCM_16", format="WAV")
    return buf.getvalue()


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
    """Start the process-wide pool's workers in the background (the server calls this at start-up).

    With ``E2V_DECODE_MEMORY_MB`` set, first checks here, in the caller's thread, that one second of
    audio decodes under it (:meth:`DecoderPool.check_memory_limit`): ``serve`` stops with one line if not.
    """
    pool = get_pool()
    if pool.config.memory_mb > 0 and pool.config.workers > 0:
        from emotion2vec_webui.audio.format import AudioLimits
        from emotion2vec_webui.config import load_settings

        pool.check_memory_limit(AudioLimits.from_settings(load_settings()))
    pool.prestart()


def decode_guarded(
    source: str | os.PathLike | bytes,
    *,
    source_name: str | None = None,
    limits: AudioLimits | None = None,
    options: DecodeOptions | None = None,
    wait_s: float | None = None,
) -> DecodedAudio:
    """:func:`decode.decode_audio` for untrusted input, in the process-wide pool (see the module docstring).

    ``wait_s``: the longest wait for a free decoder (None: ``E2V_DECODE_WAIT_S``, then ``overloaded``).
    """
    return get_pool().decode(source, source_name=source_name, limits=limits, options=options, wait_s=wait_s)


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
        allowance = header["allowance"]
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
            error = _out_of_memory(name, allowance, "a memory error")
            reply = ("error", error.code, error.message)
        except Exception as exc:  # a decoder bug on odd input: this file fails, the worker lives on
            text = _without_path(f"{type(exc).__name__}: {exc}", header["path"], name)
            reply = ("error", "audio_undecodable", f"{name} cannot be decoded: {text} / 无法解码 {name}。")
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


def _without_path(text: str, path: str | None, name: str) -> str:
    """``text`` with the server path of the file replaced by its name (messages never show server paths)."""
    if not path:
        return text
    return text.replace(path, name).replace(os.path.dirname(path) + os.sep, "")


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
