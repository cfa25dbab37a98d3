"""Warm starts: one server process imports torch, pandas, matplotlib and the stages once, and forks a child
per `metasae` command, so a study's ~120 jobs do not each pay the ~3.5 CPU-s of those imports (measured here,
2-core EPYC: `import torch` alone 2.1-2.4 CPU-s).

The workflow's driver starts the server (`start`) when a local run starts and exports its socket in
`METASAE_WARM`; each job's `metasae` is then a light client (`forward`) that hands the server its argv,
working folder, environment and standard streams, relays signals to the child and exits with the child's
status. The child is the command run as it would run cold: the server imports but computes nothing (no torch
op, so no thread pool or CUDA context exists to be forked), and it serves only jobs whose MATCHED_VARS (the
thread variables the libraries read when they load, and the SLURM allocation) equal its own; any other job,
or one that cannot reach the server, runs cold. The server exits with its parent, or after `IDLE_S` idle.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ENV = "METASAE_WARM"  # the server's socket path, for the jobs' clients
CHILD_CPU_ENV = "METASAE_CHILD_CPU"  # a file the client writes the child's "user system" CPU-s to (cpu_shim)
# Read by the native libraries when they load, so a forked child keeps the server's values: a job whose
# values differ runs cold (Snakemake sets them all to the job's threads). A job of another SLURM allocation
# (a cluster job on the driver's node) runs cold too, inside its own allocation.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
PRELOAD = (  # what the study's jobs import; a module missing here is imported by the child as usual
    "torch",
    "torch._dynamo",  # what a torch.optim optimizer imports when first made: 1.8 CPU-s here
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "scipy.stats",
    "safetensors.torch",
    "metasae.figures",
    "matplotlib.pyplot",
    "PIL.Image",
    "metasae.stages.train_sae",
    "metasae.stages.analyse",
    "metasae.stages.cache_acts",
    "metasae.stages.train_classifier",
    "metasae.stages.synth_acts",
    "metasae.stages.synth_oracle",
    "metasae.stages.score_synth",
    "metasae.stages.aggregate",
    "metasae.stages.train_vit",
    "metasae.stages.probe",
    "metasae.stages.probe_sae",
)
MATCHED_VARS = (*THREAD_VARS, "SLURM_JOB_ID")
IDLE_S = 600.0
_HEADER = struct.Struct("!I")


def matched_env(env: dict[str, str]) -> dict[str, str | None]:
    """What a job's environment must share with the server's for the server to run it."""
    return {name: env.get(name) for name in MATCHED_VARS}


# ---- client ---------------------------------------------------------------------------------------------


def forward(argv: list[str]) -> int | None:
    """Run `metasae argv` in the warm server's child and return its exit status; None where no server takes
    it (no METASAE_WARM, unreachable, or refused: other MATCHED_VARS): the caller runs it cold."""
    path = os.environ.get(ENV)
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(sock, [_HEADER.pack(len(request)) + request], [_stream_fd(i) for i in range(3)])
        reply = sock.makefile("r")
        first = reply.readline().split()
    except OSError:
        return None
    if not first or first[0] != "pid":
        return None  # refused
    child = int(first[1])

    def relay(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, relay)
    try:
        last = reply.readline().split()
    except OSError:
        last = []
    if not last or last[0] != "exit":
        print(f"metasae: the warm server lost command {argv[:2]} (child {child})", file=sys.stderr)
        return 1
    if os.environ.get(CHILD_CPU_ENV):
        Path(os.environ[CHILD_CPU_ENV]).write_text(f"{last[2]} {last[3]}\n")
    return int(last[1])


def _stream_fd(fd: int) -> int:
    """A standard stream's descriptor, or /dev/null where the job has none open."""
    try:
        os.fstat(fd)
        return fd
    except OSError:
        return os.open(os.devnull, os.O_RDWR)


# ---- driver ---------------------------------------------------------------------------------------------


def start(log: Path, preload: tuple[str, ...] = PRELOAD) -> subprocess.Popen | None:
    """Start a server for this process's jobs (thread variables set as a one-thread job's) and export its
    socket in METASAE_WARM; None where it does not come up (jobs then run cold). Its log goes to `log`."""
    folder = tempfile.mkdtemp(prefix="metasae-warm-")  # short: a socket path is at most 107 bytes
    path = os.path.join(folder, "server.sock")
    env = {**os.environ, **{name: "1" for name in THREAD_VARS}}
    env.pop(ENV, None)
    entry = (
        f"from metasae.cli import run_here, warm; warm.serve({path!r}, {os.getpid()}, {preload!r}, run_here)"
    )
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", entry],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not os.path.exists(path):
        stop(server)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    os.environ[ENV] = path
    return server


def stop(server: subprocess.Popen | None) -> None:
    """Stop a server from `start` (its running children finish first) and reap it."""
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# ---- server ---------------------------------------------------------------------------------------------


class _Server:
    """The accept loop, one thread (fork copies only the calling thread: no other may hold a lock)."""

    def __init__(
        self, path: str, parent: int, preload: tuple[str, ...], run: Callable[[list[str]], int]
    ) -> None:
        self.path, self.parent, self.preload, self.run_command = path, parent, preload, run
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.own_env = matched_env(os.environ)

    def run(self) -> None:
        for name in self.preload:
            __import__(name)
        tmp = self.path + ".tmp"
        self.listener.bind(tmp)
        self.listener.listen(64)
        os.rename(tmp, self.path)  # the socket appears only once the imports are done
        self.selector.register(self.listener, selectors.EVENT_READ)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        try:
            self._serve()
        finally:
            os.unlink(self.path)
            os.rmdir(os.path.dirname(self.path))

    def _serve(self) -> None:
        idle_since = time.monotonic()
        served = 0
        while not (self.stopping and not self.children):
            for key, _ in self.selector.select(timeout=0.1):
                try:
                    if key.fileobj is self.listener and not self.stopping:
                        served += self._accept()
                    elif key.fileobj is not self.listener:
                        self._client_left(key.fileobj)
                except Exception:  # one job's trouble (a client gone mid-request) must not end the others
                    traceback.print_exc()
            self._reap()
            if self.children:
                idle_since = time.monotonic()
            orphaned = os.getppid() != self.parent
            if orphaned or time.monotonic() - idle_since > IDLE_S:
                self.stopping = True
        print(f"metasae warm server: served {served} command(s)", file=sys.stderr)

    def _accept(self) -> int:
        conn, _ = self.listener.accept()
        try:
            request, fds = self._receive(conn)
        except (OSError, ValueError) as exc:
            print(f"metasae warm server: bad request: {exc}", file=sys.stderr)
            conn.close()
            return 0
        if matched_env(request["env"]) != self.own_env:
            with contextlib.suppress(OSError):
                conn.sendall(b"refused\n")
            conn.close()
            _close_all(fds)
            return 0
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(request, fds, conn)
        _close_all(fds)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ)
        try:
            conn.sendall(f"pid {pid}\n".encode())
        except OSError:  # its client was killed while it waited to be accepted: end its job too
            self._client_left(conn)
        return 1

    @staticmethod
    def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        if len(fds) != 3 or len(data) < _HEADER.size:
            _close_all(fds)
            raise ValueError("expected a request and three streams")
        (size,) = _HEADER.unpack_from(data)
        data = data[_HEADER.size :]
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                _close_all(fds)
                raise ValueError("request cut short")
            data += chunk
        return json.loads(data), fds

    def _child(self, request: dict, fds: list[int], conn: socket.socket) -> None:
        """The command, in the forked child, as the job would have run it cold; never returns."""
        status = 1
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            self.selector.close()
            self.listener.close()
            for other in [conn, *self.children.values()]:
                other.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            os.environ.pop(ENV, None)
            tempfile.tempdir = None  # gettempdir() again, from the job's TMPDIR
            sys.argv = ["metasae", *request["argv"]]
            status = self.run_command(request["argv"])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(status)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid)
            if conn.fileno() in self.selector.get_map():
                self.selector.unregister(conn)
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + N
            with contextlib.suppress(OSError):
                conn.sendall(f"exit {code} {usage.ru_utime:.3f} {usage.ru_stime:.3f}\n".encode())
            conn.close()

    def _client_left(self, conn: socket.socket) -> None:
        """A job's client closed its end before its child ended (killed): end the child too."""
        pid = next(p for p, c in self.children.items() if c is conn)
        self.selector.unregister(conn)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def serve(path: str, parent: int, preload: tuple[str, ...], run: Callable[[list[str]], int]) -> None:
    """The server's entry (`start` runs it in a new process): serve until `parent` exits or SIGTERM; `run`
    runs one command line in a child (metasae.cli.run_here)."""
    _Server(path, parent, preload, run).run()
