"""A throwaway jail for one learner's kernel: a private folder, limits, another user, no leftovers.

Per notebook:
- a private folder (0711, the grader's): `work/` a copy of the notebook's folder (the notebook,
  and the data files beside it; never another .ipynb), `lib/bnlib` a copy of the course package
  (what `import bnlib` gives the kernel), `home/` and `tmp/` (HOME, TMPDIR), `req/` (the grader's
  requests, read-only to the kernel) and `res/` (the kernel's answers);
- a clean environment (no variable of the grader's is passed on);
- limits set before the kernel starts (`prlimit`, else setrlimit in the child): CPU seconds,
  address space, file size, core dumps, and processes (for a dedicated user);
- when the grader is root: a fresh unprivileged uid of its own (so it can write nothing of the
  grader's, the course's or another learner's, and its processes are all found and killed at
  the end), and, where the system allows it, a mount namespace where the course's folder (all
  but the Python environment inside it, if any) and the private parts of /root are empty
  tmpfs mounts, and /dev/shm is its own;
- at the end: its process group, and every process of its uid (or carrying its marker), killed;
  the folder removed.
"""

from __future__ import annotations

import functools
import os
import queue
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "Sandbox", "isolation"]

_MAX_COPY = 64 * 2**20  # bytes of the learner's folder copied (data files beside the notebook)


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 900
    memory_bytes: int = 6 * 2**30
    file_bytes: int = 512 * 2**20
    processes: int = 256  # for a dedicated uid only (the limit counts all of the uid's)
    output_bytes: int = 4 * 2**20  # stdout/stderr the grader keeps per cell


@functools.cache
def isolation():
    """How kernels are isolated here: "namespace" (root, mount namespace and a fresh uid),
    "uid" (root, a fresh uid), or "none" (the grader's own user: see the README)."""
    if os.geteuid() != 0:
        return "none"
    if shutil.which("unshare") and shutil.which("setpriv"):
        try:
            done = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "true"],
                capture_output=True,
                timeout=10,
            )
            if done.returncode == 0:
                return "namespace"
        except (OSError, subprocess.SubprocessError):
            pass
    if shutil.which("setpriv") and not _blocked_dirs(reach=[tempfile.gettempdir()]):
        return "uid"
    return "none"


def _python_paths():
    import numpy

    paths = {sys.executable, os.path.realpath(sys.executable), sys.prefix, sys.base_prefix}
    paths.add(str(Path(numpy.__file__).parents[1]))
    return sorted(paths)


def _blocked_dirs(course=None, reach=()):
    """{dir: {child, ...}}: directories to replace by an empty tmpfs in the kernel's mount
    namespace, with just `child`ren bound back in: those others may not enter on the way to the
    Python we run, and the course (the kernel gets bnlib from its own copy; the solutions, tests
    and history stay out of its sight)."""
    blocked = {}
    if course is not None:
        blocked[str(course)] = set()
        for path in _python_paths():
            rel = Path(os.path.realpath(path))
            if rel.is_relative_to(course) and rel != Path(course):
                blocked[str(course)].add(rel.relative_to(course).parts[0])
            if Path(path).is_relative_to(course) and Path(path) != Path(course):
                blocked[str(course)].add(Path(path).relative_to(course).parts[0])
    for path in [*_python_paths(), *map(str, reach)]:
        parts = Path(path).parts
        for i in range(1, len(parts)):
            d = Path(*parts[:i])
            if not os.stat(d).st_mode & stat.S_IXOTH:
                blocked.setdefault(str(d), set()).add(parts[i])
    return blocked


def _copy_folder(src, dst, notebook):
    """Copy the notebook's folder, without other notebooks, links, checkpoints or big files."""
    total = 0
    for root, dirs, files in os.walk(src, followlinks=False):
        rel = Path(root).relative_to(src)
        dirs[:] = sorted(
            d
            for d in dirs
            if d != ".ipynb_checkpoints"
            and not d.startswith(".")
            and not os.path.islink(os.path.join(root, d))
        )
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            if name.endswith(".ipynb") and path != notebook:
                continue
            size = path.stat().st_size
            if total + size > _MAX_COPY:
                continue
            total += size
            shutil.copyfile(path, dst / rel / name)


@dataclass
class Run:
    status: str  # "ok", "error" (the cell raised), "timeout", "died"
    ename: str = ""
    evalue: str = ""


class Sandbox:
    """One learner's kernel in its jail. Use as a context manager: nothing survives __exit__."""

    def __init__(self, notebook, course_root, limits=Limits()):
        self.notebook = Path(notebook).resolve()
        self.course = Path(course_root)
        self.limits = limits
        self.mode = isolation()
        self.token = secrets.token_hex(8)
        self.uid = None
        if self.mode != "none":
            self.uid = 2_000_000_000 + secrets.randbelow(100_000_000)
        self.proc = None
        self.kc = None
        self._io = None
        self._closing = threading.Lock()

    # --- setting up -----------------------------------------------------------------------------

    def __enter__(self):
        # NB: jupyter_client's blocking calls make an event loop per thread that calls them, and
        # the checks call learner code from a new thread each time: all of this kernel's traffic
        # goes through one thread of its own instead
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bnlib-kernel")
        self.root = Path(tempfile.mkdtemp(prefix="bnlib-grade-"))
        try:
            self._prepare()
            for attempt in range(3):  # a port taken between choosing and binding it: retry
                try:
                    self._io.submit(self._start).result()
                    break
                except RuntimeError:
                    self.kill()
                    if attempt == 2:
                        raise
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _prepare(self):
        r = self.root
        os.chmod(r, 0o711)
        self.work, self.lib = r / "work", r / "lib"
        self.home, self.tmp, self.req, self.res = r / "home", r / "tmp", r / "req", r / "res"
        _copy_folder(self.notebook.parent, self.work, self.notebook)
        shutil.copytree(
            self.course / "bnlib",
            self.lib / "bnlib",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        for d in (self.home, self.tmp, self.req, self.res):
            d.mkdir()
        for d in (self.lib, self.req):
            for p in [d, *d.rglob("*")]:
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
        if self.uid is not None:
            for top in (self.work, self.home, self.tmp, self.res):
                for p in [top, *top.rglob("*")]:
                    os.lchown(p, self.uid, self.uid)
                os.chmod(top, 0o700)
        self.connection = r / "kernel.json"

    def _env(self):
        bindir = str(Path(sys.executable).parent)
        return {
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "PYTHONPATH": str(self.lib),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "IPYTHONDIR": str(self.home / ".ipython"),
            "JUPYTER_RUNTIME_DIR": str(self.tmp),
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "BNLIB_SANDBOX": self.token,
        }

    def _command(self):
        from jupyter_client.connect import write_connection_file

        write_connection_file(
            str(self.connection),
            ip="127.0.0.1",
            key=secrets.token_hex(32).encode(),
            transport="tcp",
        )
        if self.uid is not None:
            os.chown(self.connection, self.uid, self.uid)
        os.chmod(self.connection, 0o600)
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", str(self.connection)]
        kernel += ["--HistoryManager.enabled=False", "--IPKernelApp.log_level=CRITICAL"]
        if self.mode == "none":
            return kernel
        lim = self.limits
        limits = [
            "prlimit",
            f"--cpu={lim.cpu_seconds}",
            f"--as={lim.memory_bytes}",
            f"--fsize={lim.file_bytes}",
            f"--nproc={lim.processes}",
            "--core=0",
            "--",
        ]
        drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
        drop += ["--inh-caps=-all", "--no-new-privs", "--"]
        inner = limits + drop + kernel
        if self.mode == "uid":
            return inner
        script = ["set -e"]
        course = Path(os.path.realpath(self.course))
        blocked_dirs = _blocked_dirs(course, reach=[self.root])
        # NB: each way back in is held open as a file descriptor (dash: 3 to 9) across the tmpfs
        # mount, then bound from /proc/self/fd (a path inside the tmpfs would be hidden by it)
        opened, fd = [], 3
        for blocked, children in sorted(blocked_dirs.items()):
            for child in sorted(children):
                if fd > 9:
                    raise RuntimeError("too many folders to bind into the kernel's namespace")
                script.append(f"exec {fd}<{_q(Path(blocked) / child)}")
                opened.append((fd, Path(blocked) / child))
                fd += 1
        for blocked in sorted(blocked_dirs, key=lambda d: len(Path(d).parts)):  # outer first
            b = _q(blocked)
            # (one inside another blocked folder is only there if bound back in)
            script.append(f"if [ -d {b} ]; then mount -t tmpfs -o mode=711,size=1m tmpfs {b}; fi")
            for fd, target in opened:
                if target.parent == Path(blocked):
                    script.append(f"mkdir -p {_q(target)}")
                    script.append(f"mount --no-canonicalize --bind /proc/self/fd/{fd} {_q(target)}")
                    script.append(f"exec {fd}<&-")
        if Path("/dev/shm").is_dir():
            script.append("mount -t tmpfs -o mode=1777,size=64m tmpfs /dev/shm")
        script.append("exec " + " ".join(_q(a) for a in inner))
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]

    def _start(self):
        from jupyter_client import BlockingKernelClient

        preexec = None
        if self.mode == "none":
            lim = self.limits

            def preexec():  # NB: only without prlimit (the grader's own user)
                for what, value in (
                    (resource.RLIMIT_CPU, lim.cpu_seconds),
                    (resource.RLIMIT_AS, lim.memory_bytes),
                    (resource.RLIMIT_FSIZE, lim.file_bytes),
                    (resource.RLIMIT_CORE, 0),
                ):
                    resource.setrlimit(what, (value, value))

        if self.kc is not None:
            self.kc.stop_channels()
        with open(self.root / "kernel.log", "wb") as log:
            self.proc = subprocess.Popen(
                self._command(),
                cwd=self.work,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=preexec,
            )
        self.kc = BlockingKernelClient(connection_file=str(self.connection))
        self.kc.load_connection_file()
        self.kc.start_channels()
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                lines = (self.root / "kernel.log").read_text(errors="replace").splitlines()
                last = lines[-1][:200] if lines else ""
                raise RuntimeError(
                    f"the kernel exited at start (code {self.proc.returncode}) {last}"
                )
            try:
                self.kc.wait_for_ready(timeout=1)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the kernel did not start within 90 s") from None

    # --- running code ---------------------------------------------------------------------------

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def run(self, code, timeout):
        """Run code in the kernel; wait at most `timeout` s (then interrupt, then kill)."""
        io = self._io
        if not self.alive() or io is None:
            return Run("died")
        try:
            return io.submit(self._run, code, timeout).result()
        except RuntimeError:  # closed meanwhile (Ctrl-C)
            return Run("died")

    def _run(self, code, timeout):
        if not self.alive():
            return Run("died")
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        interrupted = None
        result = Run("ok")
        while True:
            if not self.alive():
                return Run("died")
            now = time.monotonic()
            if interrupted is None and now > deadline:
                self._interrupt()
                interrupted = now
            elif interrupted is not None and now > interrupted + 5:
                self.kill()  # it would not stop: nothing of it may go on
                return Run("died", "CellTimeoutError", "killed after an interrupt did not stop it")
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg.get("msg_type"), msg.get("content", {})
            if kind == "error":  # NB: printed output is not kept at all: it cannot get in the way
                result = Run("error", str(content.get("ename")), str(content.get("evalue")))
            elif kind == "status" and content.get("execution_state") == "idle":
                if interrupted is not None:
                    return Run("timeout", "CellTimeoutError", f"ran for more than {timeout:g} s")
                return result

    def _interrupt(self):
        try:
            if self.uid is None:
                os.kill(self.proc.pid, signal.SIGINT)
            else:  # another uid: ask the kernel itself (the control channel)
                msg = self.kc.session.msg("interrupt_request", {})
                self.kc.control_channel.send(msg)
        except (OSError, AttributeError):
            pass

    # --- tearing down ---------------------------------------------------------------------------

    def _close_channels(self):
        from jupyter_core.utils import ensure_event_loop

        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        loop = ensure_event_loop()
        if not loop.is_running():
            loop.close()

    def _stragglers(self):
        """Pids of processes left by this kernel: its uid's, or those carrying its marker."""
        found = []
        marker = f"BNLIB_SANDBOX={self.token}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                if self.uid is not None:
                    if os.stat(f"/proc/{entry}").st_uid == self.uid:
                        found.append(int(entry))
                else:
                    with open(f"/proc/{entry}/environ", "rb") as f:
                        if marker in f.read().split(b"\0"):
                            found.append(int(entry))
            except OSError:
                continue
        return found

    def kill(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.kill()
            except OSError:
                pass
        for _ in range(50):
            left = self._stragglers()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def close(self):
        """Kill everything of the kernel and remove its folder; safe to call from any thread,
        any number of times."""
        self.kill()
        with self._closing:
            io, self._io = self._io, None
        if io is not None:
            try:
                io.submit(self._close_channels).result(timeout=30)
            except Exception:  # noqa: BLE001 - closing sockets of a dead kernel
                pass
            io.shutdown(wait=False)
        if getattr(self, "root", None) is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _q(arg):
    import shlex

    return shlex.quote(str(arg))
