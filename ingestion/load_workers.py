"""Worker processes that prepare (read, type, validate) landed batches for the loader.

The loader's process writes while these prepare the next groups of a big load. Each worker is
a plain ``python -m ingestion.load_workers`` child talking over its stdin/stdout pipes
(length-prefixed pickles), not a ``multiprocessing`` child: ``multiprocessing``'s spawn and
forkserver start methods re-run the parent's ``__main__`` script in every child, which breaks
under hosts that replace it (notebooks, Streamlit's script runner, some task runners), and fork
would copy the loader's open warehouse connection and library threads. A daemonic host process
(a Celery prefork worker) may start these children too.

Protocol: the parent sends one context frame ``(zone, spec, suppressor)``, then job frames
``(intervals, recent volumes)``; the worker answers each job, in order, with
``("ok", prepared batches)`` or ``("error", exception, traceback text)``. End of input ends the
worker.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")
_ROOT = Path(__file__).resolve().parent.parent  # the checkout holding ingestion/ (same code in the workers)


class LoadWorkerError(RuntimeError):
    """A load worker process died or could not be started."""


def write_frame(fh: IO[bytes], obj: Any, pickled: bytes | None = None) -> None:
    """Send ``obj`` (or ``pickled``, its pickle made once for several workers)."""
    data = pickled if pickled is not None else pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(_HEADER.pack(len(data)))
    fh.write(data)
    fh.flush()


def read_frame(fh: IO[bytes]) -> Any:
    """The next object, or raises EOFError at the end of the stream."""
    head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(head)
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = fh.readinto(view[got:])
        if not n:
            raise EOFError
        got += n
    return pickle.loads(buf)


class WorkerPool:
    """``n`` load worker processes; :meth:`map` prepares jobs in order, round robin, at most
    two jobs per worker ahead of the caller (memory stays bounded by a few groups).
    ``context``: the pickled ``(zone, spec, suppressor)`` every worker starts from."""

    def __init__(self, n: int, context: bytes) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(n):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "ingestion.load_workers"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, env=env, cwd=str(_ROOT)))
            for p in self.procs:
                write_frame(p.stdin, None, pickled=context)
        except OSError as exc:
            self.close(kill=True)
            raise LoadWorkerError(f"could not start the load worker processes: {exc}") from exc

    def _send(self, k: int, job: Any) -> None:
        p = self.procs[k % len(self.procs)]
        try:
            write_frame(p.stdin, job)
        except (BrokenPipeError, OSError) as exc:
            raise self._died(p) from exc

    def _died(self, p: subprocess.Popen[bytes]) -> LoadWorkerError:
        try:
            code = p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return LoadWorkerError(f"a load worker process (pid {p.pid}) died with exit code {code} (killed, or out of "
                               "memory?)")

    def map(self, jobs: list[Any]) -> Iterator[Any]:
        ahead = 2 * len(self.procs)
        for k in range(min(ahead, len(jobs))):
            self._send(k, jobs[k])
        for k in range(len(jobs)):
            p = self.procs[k % len(self.procs)]
            try:
                reply = read_frame(p.stdout)
            except EOFError:
                raise self._died(p) from None
            if k + ahead < len(jobs):
                self._send(k + ahead, jobs[k + ahead])
            if reply[0] == "error":
                exc, text = reply[1], reply[2]
                log.error("load worker %s failed:\n%s", p.pid, text)
                raise exc
            yield reply[1]

    def close(self, kill: bool = False) -> None:
        for p in self.procs:
            if kill:
                p.kill()
            elif p.stdin:
                try:
                    p.stdin.close()  # end of input: the worker exits
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            for fh in (p.stdin, p.stdout):
                if fh is not None and not fh.closed:
                    try:
                        fh.close()
                    except OSError:
                        pass


def _serve(inp: IO[bytes], out: IO[bytes]) -> None:
    from ingestion.bronze import prepare_batches

    zone, spec, suppressor = read_frame(inp)
    while True:
        try:
            intervals, recent = read_frame(inp)
        except EOFError:
            return
        try:
            reply: tuple[Any, ...] = ("ok", prepare_batches(zone, spec, intervals, recent, suppressor))
        except Exception as exc:  # noqa: BLE001 - sent to the loader, which raises it for its group
            text = traceback.format_exc()
            try:
                pickle.dumps(exc)
            except Exception:  # noqa: BLE001 - an exception that cannot travel is sent as text
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            reply = ("error", exc, text)
        write_frame(out, reply)


def main() -> None:
    # the protocol owns the original stdout; anything printed goes to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"load worker {os.getpid()}: %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ingestion").setLevel(logging.INFO)  # the loader's own notes, as in its process
    _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
