"""Decode a compressed live stream (Opus in Ogg or WebM pages) as it arrives, in a guarded child process.

A browser's ``MediaRecorder`` and most VoIP tools hand out Opus in Ogg
(Firefox) or WebM (Chrome) pages. The pages of a take arrive over minutes and
the Opus decoder keeps its state from one packet to the next, so they cannot
be decoded as independent files by the decoder pool (``decoder_pool.py``,
one whole file per job). Each compressed stream gets one child process of
its own instead, guarded the same ways as the pool's workers:

* FFmpeg through PyAV demuxes and decodes (the decoder every upload goes
  through, ``readers.py``); the demuxer is named, never probed: ``ogg`` or
  ``matroska`` (WebM), and the stream must be Opus;
* the child sets itself, before it reads a byte, an address-space limit (``RLIMIT_AS``,
  :data:`MEMORY_BYTES`) and a CPU-time limit (``RLIMIT_CPU``, the take's
  longest duration plus 30 s); a crash, a bomb or a limit kills the child,
  not the server, and the take fails with ``audio_undecodable``;
* what goes in is bounded by the face (frames and speed); what comes back is
  bounded by the parent: samples past the take's limit are dropped.

Wire: the parent writes the container's bytes to the child's stdin as they
come (from a writer thread: the event loop never blocks on the pipe) and
closes it at the end; the child answers on stdout with ``rate`` and
``channels`` (two little-endian uint32) once the stream's header is read,
then float32 little-endian interleaved samples, and a one-line reason on
stderr when it fails. Decoded audio is at the codec's rate (48 kHz for Opus).
"""

from __future__ import annotations

import logging
import queue
import struct
import subprocess
import sys
import threading

import numpy as np

from emotion2vec_webui.errors import AudioError

log = logging.getLogger(__name__)

DEMUXERS = {"ogg": "ogg", "webm": "matroska"}  # the first bytes of a page → FFmpeg's demuxer
MEMORY_BYTES = 768 * 1024 * 1024  # the child's address space (Python, PyAV, FFmpeg: ~300 MB idle)
CLOSE_WAIT_S = 10.0  # at the end, how long the child may take to decode what is left
MAX_QUEUED = 256  # container chunks waiting for the child (one a frame; the face reads a frame at a time)
READ_BYTES = 64 * 1024
EXIT_BAD_INPUT = 3


def container_of(head: bytes) -> str | None:
    """``ogg`` or ``webm`` from a stream's first bytes (``OggS``, the EBML magic), else None."""
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


def _limit(cpu_s: int) -> None:
    """The child's own limits, set first thing (not in ``preexec_fn``: unsafe in a threaded server)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))


class StreamDecoder:
    """One stream's child decoder (see the module docstring).

    Args:
        container: ``ogg`` or ``webm`` (:func:`container_of` of the first frame).
        max_seconds: the take's longest duration (its CPU-time limit follows).
        name: names the stream in messages.
    """

    def __init__(self, container: str, max_seconds: float, name: str = "the stream") -> None:
        self.name = name
        self.rate = self.channels = 0
        self.failed: str | None = None
        self._out: queue.Queue[np.ndarray] = queue.Queue()
        self._in: queue.Queue[bytes | None] = queue.Queue(MAX_QUEUED)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "emotion2vec_webui.audio.stream_decode", DEMUXERS[container],
             str(int(max_seconds) + 30)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._writer = threading.Thread(target=self._write, name="e2v-stream-decode-in", daemon=True)
        self._reader = threading.Thread(target=self._read, name="e2v-stream-decode-out", daemon=True)
        self._writer.start()
        self._reader.start()

    def write(self, data: bytes) -> None:
        """Hand the child the next bytes of the container (never blocks; the face bounds the pace)."""
        try:
            self._in.put_nowait(bytes(data))
        except queue.Full:
            raise AudioError("audio_undecodable", f"{self.name}: the decoder fell behind the stream. / "
                                                  "解码跟不上音频流。") from None  # fmt: skip

    def take(self) -> np.ndarray:
        """The samples decoded since the last call: float32 ``[n, channels]`` (empty before the header)."""
        blocks = []
        while True:
            try:
                blocks.append(self._out.get_nowait())
            except queue.Empty:
                break
        if not blocks:
            return np.zeros((0, max(self.channels, 1)), np.float32)
        return np.concatenate(blocks)

    def close(self) -> np.ndarray:
        """End the input, wait for the child to decode the rest; what was left to :meth:`take`.

        Raises:
            AudioError: ``audio_undecodable`` when the child failed (not Opus, corrupt, a limit, a crash).
        """
        self._in.put(None)
        try:
            self._proc.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            self.failed = self.failed or "the decoder did not finish in time"
        self._reader.join(CLOSE_WAIT_S)
        rest = self.take()
        self.check()
        return rest

    def check(self) -> None:
        """Raise ``audio_undecodable`` if the child has failed."""
        code = self._proc.poll()
        if code not in (None, 0) and self.failed is None:
            why = self._proc.stderr.read(500).decode("utf-8", "replace").strip() if self._proc.stderr else ""
            self.failed = why.splitlines()[-1] if why else f"the decoder stopped (exit status {code})"
        if self.failed:
            raise AudioError("audio_undecodable", f"{self.name} cannot be decoded as Opus: {self.failed}. / "
                                                  "音频流无法按 Opus 解码。")  # fmt: skip

    def kill(self) -> None:
        """Stop the child at once (the take was dropped)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _write(self) -> None:
        stdin = self._proc.stdin
        try:
            while (data := self._in.get()) is not None:
                stdin.write(data)
                stdin.flush()
        except OSError:  # the child is gone; check() says why
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _read(self) -> None:
        stdout = self._proc.stdout
        head = stdout.read(8)
        if len(head) < 8:
            return
        self.rate, self.channels = struct.unpack("<II", head)
        width = 4 * self.channels
        carry = b""
        while chunk := stdout.read1(READ_BYTES):
            data = carry + chunk
            whole = len(data) // width * width
            carry = data[whole:]
            if whole:
                self._out.put(np.frombuffer(data[:whole], "<f4").reshape(-1, self.channels).copy())


def _child(demuxer: str, cpu_s: int) -> int:
    """The child: its limits, then demux and decode stdin and write the PCM to stdout (see the module docstring)."""
    _limit(cpu_s)
    import av

    from emotion2vec_webui.audio.readers import _frame_blocks

    out = sys.stdout.buffer
    try:
        container = av.open(sys.stdin.buffer, mode="r", format=demuxer)
    except Exception as exc:
        print(f"not an {demuxer} stream ({type(exc).__name__})", file=sys.stderr)
        return EXIT_BAD_INPUT
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if len(streams) != 1 or streams[0].codec_context is None or streams[0].codec_context.name != "opus":
            print("the stream must hold one Opus audio track", file=sys.stderr)
            return EXIT_BAD_INPUT
        stream = streams[0]
        started = None
        try:
            for frame in container.decode(stream):
                if not frame.samples:
                    continue
                shape = (int(frame.sample_rate), frame.layout.nb_channels or 1)
                if started is None:
                    started = shape
                    out.write(struct.pack("<II", *shape))
                elif shape != started:
                    print("the stream changes rate or channels mid-stream", file=sys.stderr)
                    return EXIT_BAD_INPUT
                for block in _frame_blocks(frame, "stream"):
                    out.write(np.ascontiguousarray(block, "<f4").tobytes())
                out.flush()
        except Exception as exc:  # corrupt data after a good start: what decoded is kept
            print(f"decoding stopped ({type(exc).__name__}: {str(exc)[:200]})", file=sys.stderr)
            return EXIT_BAD_INPUT if started is None else 0
    return 0


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(_child(sys.argv[1], int(sys.argv[2])))
