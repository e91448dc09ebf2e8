"""The grader's side of a learner's kernel: stand-ins for the learner's functions and objects.

The checks in bnlib.checks call what they are given. `bnlib grade` gives them `RemoteFunction`s:
calling one sends the arguments to the learner's kernel (a pickle the grader writes; the kernel
is the one trusting it), runs the learner's function there, and reads the answer back as plain
data (JSON and .npy files, numbers only, size-capped, never unpickled). So the comparing,
diagnosing and scoring happen in the grader's process, on references it computes itself.

Objects that are not plain data (a class, a cache that is an object) stay in the kernel and come
back as handles; passed to a later call, a handle means that object again. A bnlib helper given a
handle (e.g. the ex02 check running `MyBatchNorm1d` through train and eval steps) runs in the
kernel too: see `Remote.runner`.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import stat
import threading

import numpy as np

__all__ = ["GradingError", "Opaque", "Remote", "RemoteFunction"]

MAX_ANSWER = 300 * 2**20  # bytes of one answer (its JSON and arrays together)


class GradingError(Exception):
    """The kernel did not answer a call (it died, hung, or answered nonsense)."""

    __bnlib_where__ = ""  # the check's feedback names no line: the problem is not in a line


class Opaque:
    """A learner's object that is not plain data; it stays in the kernel (see the module doc)."""

    def __init__(self, remote, ref, text):
        self._remote, self._ref, self._text = remote, ref, text

    @property
    def __bnlib_remote__(self):
        return self._remote

    def __repr__(self):
        return self._text


class RemoteFunction:
    """A learner's function, called in the learner's kernel."""

    def __init__(self, remote, ref, name, text):
        self._remote, self._ref, self._text = remote, ref, text
        self.__name__ = self.__qualname__ = name

    @property
    def __bnlib_remote__(self):
        return self._remote

    def __call__(self, *args):
        return self._remote.call(self, args)

    def __repr__(self):
        return self._text


def _read_capped(path, budget):
    """The bytes of a regular file the kernel wrote, without following a link or a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise GradingError(f"no answer from the kernel ({type(e).__name__})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > budget[0]:
            raise GradingError("the kernel's answer is not a file of a sensible size")
        budget[0] -= info.st_size
        return f.read(info.st_size + 1)[: info.st_size]


class Remote:
    """The channel to one learner's kernel: describe names, call functions, decode answers.

    kernel: has run(code, timeout) -> an object with .status ("ok", "error", "timeout", "died");
    req_dir: where the grader writes requests (the kernel reads them);
    res_dir: where the kernel writes answers (the grader reads them with care).
    """

    def __init__(self, kernel, agent_name, req_dir, res_dir, call_timeout):
        self.kernel, self.agent = kernel, agent_name
        self.req, self.res = str(req_dir), str(res_dir)
        self.call_timeout = call_timeout
        self.lock = threading.Lock()
        self.count = 0
        self.violations = []  # (the learner's function or class, the reference it used)
        self._classes = {}

    # --- requests -------------------------------------------------------------------------------

    def _next(self):
        self.count += 1
        return self.count

    def describe(self, names):
        """{name: (the value as the grader sees it, policy reason or None)} for names defined."""
        with self.lock:
            n = self._next()
            self._run(f"{self.agent}.describe({n}, {list(names)!r})")
            answer, arrays = self._answer(n)
        if "failed" in answer:
            raise GradingError(str(answer["failed"]))
        found = {}
        for name, entry in answer.get("names", {}).items():
            found[str(name)] = (self._decode(entry["value"], arrays), entry.get("policy"))
        return found

    def call(self, target, args):
        """Run target(*args) in the kernel: its value, or the exception it raised, re-raised."""
        with self.lock:
            n = self._next()
            data = io.BytesIO()
            _Pickler(data).dump(
                {"target": target if not isinstance(target, tuple) else target, "args": args}
            )
            path = os.path.join(self.req, f"req-{n}.pkl")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data.getvalue())
            self._run(f"{self.agent}.call({n})")
            answer, arrays = self._answer(n)
        if "failed" in answer:
            raise GradingError(str(answer["failed"]))
        who = target
        if isinstance(target, tuple):  # a bnlib helper driving the learner's objects
            who = next((a for a in args if isinstance(a, type) and "_ref" in a.__dict__), None)
        self.violations.extend((who, str(p)) for p in answer.get("policy", []))
        for i, after in answer.get("after", {}).items():
            if after is not None and int(i) < len(args):
                self._update(args[int(i)], after, arrays)
        if "raised" in answer:
            raise _exception(answer["raised"])
        return self._decode(answer.get("value", {"py": None}), arrays)

    def runner(self, fn):
        """fn (a bnlib function) run in the kernel, where the learner's objects it drives live."""
        target = ("bnlib", fn.__module__, fn.__qualname__)

        def run(*args):
            return self.call(target, args)

        run.__name__ = getattr(fn, "__name__", "run")
        return run

    def _run(self, code):
        done = self.kernel.run(code, timeout=self.call_timeout)
        if done.status == "died":
            raise GradingError("the kernel died during the call")
        if done.status == "timeout":
            raise GradingError(f"the call did not return within {self.call_timeout:g} s")

    # --- answers --------------------------------------------------------------------------------

    def _answer(self, n):
        budget = [MAX_ANSWER]
        raw = _read_capped(os.path.join(self.res, f"res-{n}.json"), budget)
        try:
            answer = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise GradingError("the kernel's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise GradingError("the kernel's answer is not a JSON object")
        cache = {}

        def array(i):
            if not isinstance(i, int) or not 0 <= i < 100_000:
                raise GradingError("the kernel's answer names a bad array")
            if i not in cache:
                data = _read_capped(os.path.join(self.res, f"res-{n}-{i}.npy"), budget)
                try:
                    a = np.load(io.BytesIO(data), allow_pickle=False)
                except (ValueError, OSError, EOFError):
                    raise GradingError("the kernel's answer has a bad array") from None
                if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
                    raise GradingError("the kernel's answer has a non-numeric array")
                cache[i] = a
            return cache[i].copy()

        return answer, array

    def _decode(self, tree, array, depth=0):
        if depth > 40 or not isinstance(tree, dict) or len(tree) < 1:
            raise GradingError("the kernel's answer is malformed")
        kind = next(iter(tree))
        v = tree[kind]
        if kind == "py" and (v is None or isinstance(v, bool)):
            return v
        if kind == "int" and isinstance(v, str):
            return int(v)
        if kind == "float" and isinstance(v, str):
            return float(v)
        if kind == "str" and isinstance(v, str):
            return v
        if kind in ("tuple", "list") and isinstance(v, list):
            items = [self._decode(x, array, depth + 1) for x in v]
            return tuple(items) if kind == "tuple" else items
        if kind == "dict" and isinstance(v, list):
            out = {}
            for pair in v:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise GradingError("the kernel's answer is malformed")
                key = self._decode(pair[0], array, depth + 1)
                try:
                    out[key] = self._decode(pair[1], array, depth + 1)
                except TypeError:  # an unhashable key
                    raise GradingError("the kernel's answer is malformed") from None
            return out
        if kind == "nd":
            return array(v)
        if kind == "np":
            return array(v)[()]
        if kind == "tensor":
            import torch

            t = torch.from_numpy(array(v))
            if tree.get("param"):
                return torch.nn.Parameter(t, requires_grad=bool(tree.get("requires_grad")))
            return t.requires_grad_(bool(tree.get("requires_grad")) and t.is_floating_point())
        if kind == "ref" and isinstance(v, int):
            return self._handle(tree)
        raise GradingError("the kernel's answer is malformed")

    def _handle(self, tree):
        ref, text = tree["ref"], str(tree.get("repr", "?"))[:200]
        name = tree.get("name") if isinstance(tree.get("name"), str) else None
        if tree.get("class"):
            cls = type(name or "LearnerClass", (), {"__bnlib_remote__": self, "_ref": ref})
            cls.__module__ = "__main__"
            return cls
        if tree.get("callable") and tree.get("qualname") in ("function", "builtin_function"):
            return RemoteFunction(self, ref, name or "function", text)
        module, qualname = str(tree.get("module", "?")), str(tree.get("qualname", "object"))
        key = (module, qualname, bool(tree.get("callable")))
        if key not in self._classes:
            attrs = {"__module__": module, "__qualname__": qualname}
            if tree.get("callable"):
                attrs["__call__"] = lambda self, *args: self._remote.call(self, args)
            self._classes[key] = type(qualname.rsplit(".", 1)[-1], (Opaque,), attrs)
        return self._classes[key](self, ref, text)

    def _update(self, arg, after, array):
        """Apply to the grader's argument what the learner's call did to its copy."""
        if isinstance(after, dict) and "module" in after:
            _update_module(arg, after["module"], lambda t: self._decode(t, array))
            return
        new = self._decode(after, array)
        if isinstance(arg, np.ndarray) and isinstance(new, np.ndarray) and new.shape == arg.shape:
            np.copyto(arg, new, casting="unsafe")
            return
        try:
            import torch

            if isinstance(arg, torch.Tensor) and isinstance(new, torch.Tensor):
                with torch.no_grad():
                    if new.shape == arg.shape:
                        arg.copy_(new)
                    else:  # a changed shape cannot be copied back: make the change visible
                        arg.add_(float("nan"))
        except ImportError:
            pass


def _update_module(model, after, decode):
    import torch

    if not isinstance(model, torch.nn.Module) or not isinstance(after, dict):
        return
    state = decode(after.get("state", {"dict": []}))
    if isinstance(state, dict):
        own = model.state_dict()
        with torch.no_grad():
            for k, v in state.items():
                if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape:
                    own[k].copy_(v)
    modules = dict(model.named_modules())
    for k, training in (after.get("training") or {}).items():
        if k in modules:
            modules[k].training = bool(training)
    for k, count in (after.get("hooks") or {}).items():
        if k in modules and isinstance(count, int):
            for _ in range(min(count, 100)):  # so a check sees the hooks left behind
                modules[k].register_forward_hook(lambda *a: None)


def _exception(raised):
    """The learner's exception, rebuilt from its description (builtin types as themselves)."""
    raised = raised if isinstance(raised, dict) else {}
    name = str(raised.get("name", "Exception"))
    message = str(raised.get("message", ""))
    cls = getattr(builtins, name, None) if raised.get("module") == "builtins" else None
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        bases = [getattr(builtins, b, None) for b in raised.get("bases", [])]
        base = next(
            (b for b in bases if isinstance(b, type) and issubclass(b, Exception)), Exception
        )
        cls = type(name.rsplit(".", 1)[-1], (base,), {"__module__": str(raised.get("module"))})
    try:
        e = cls(message)
    except Exception:  # noqa: BLE001 - an exception class with a demanding __init__
        e = Exception(message)
    where = raised.get("where")
    e.__bnlib_where__ = where if isinstance(where, str) else ""
    return e


class _Pickler(pickle.Pickler):
    """Pickles arguments for the kernel; handles on kernel objects go as references."""

    def persistent_id(self, obj):
        if isinstance(obj, Opaque | RemoteFunction):
            return ("ref", obj._ref)
        if isinstance(obj, type) and "__bnlib_remote__" in obj.__dict__:
            return ("ref", obj.__dict__["_ref"])
        return None
