"""The grader's agent inside a learner's kernel: calls the learner's code, returns plain data.

NB: this file is not imported by the grader. `bnlib grade` sends its source to the learner's
kernel, which runs it in a namespace of its own. Everything here runs in the learner's process,
so nothing here is trusted: it only carries inputs in and outputs out. A learner who rewrites it
changes what their functions seem to return, which the grader then compares with references it
computes itself on cases drawn from a secret seed.

Requests come as pickles written by the grader (the grader trusts itself); answers go back as
JSON plus .npy files (numbers only), which the grader reads without unpickling anything.
The reference-implementation policy is watched here with a profile hook during each call: a
learner frame on the stack calling a reference (BNLIB_MODULES and the others below: bnlib's
functional, nn, checks, grading...; torch's normalization functions and modules) is reported.
It is a best effort against honest mistakes and casual copying, not a proof (code in this
process can switch the hook off).
"""

import builtins
import json
import os
import pickle
import sys

import numpy as np

# The reference-implementation policy: what a graded function must not call. The policy text
# every exercise shows (bnlib.grading.grade.POLICY) is written from these literals (read from
# this source, which the grader does not import), so it names exactly what is watched here.
BNLIB_MODULES = ("functional", "nn", "inference", "distributed", "checks")  # bnlib/<m>.py
BNLIB_PACKAGES = ("grading",)  # everything in bnlib/<p>/
BNLIB_FUNCTIONS = {"hooks": ("layer_percentiles",)}  # bnlib/<m>.py's <f>
NORM_FUNCTIONS = ("batch_norm", "group_norm", "instance_norm", "layer_norm", "rms_norm")
NORM_MODULES = ("batchnorm", "instancenorm", "normalization")  # torch/nn/modules/<m>.py, forward
AGENT_FILE = "<bnlib-agent>"  # the name this source is compiled under in the kernel
_MAX_NODES = 200_000
_MAX_BYTES = 256 * 2**20


class _TooLarge(Exception):
    pass


class Agent:
    def __init__(self, req_dir, res_dir, user_ns, bnlib_dirs, work_dir):
        self.req, self.io = req_dir, res_dir
        self.ns = user_ns
        self.store = {}
        self.bnlib_dirs = tuple(os.path.join(os.path.realpath(d), "") for d in bnlib_dirs)
        self.work = os.path.join(os.path.realpath(work_dir), "")
        self.seen = {}
        self.violations = []
        self.given = set()

    # --- answering ------------------------------------------------------------------------------

    def _write(self, n, answer, arrays):
        for i, a in enumerate(arrays):
            path = os.path.join(self.io, f"res-{n}-{i}.npy")
            with builtins.open(path, "wb") as f:
                np.save(f, a, allow_pickle=False)
        tmp = os.path.join(self.io, f"res-{n}.tmp")
        with builtins.open(tmp, "w", encoding="utf-8") as f:
            json.dump(answer, f)
        os.replace(tmp, os.path.join(self.io, f"res-{n}.json"))

    def _encode(self, value, arrays):
        budget = {"nodes": 0, "bytes": 0}

        def array(a):
            budget["bytes"] += a.nbytes
            if budget["bytes"] > _MAX_BYTES:
                raise _TooLarge("the output is larger than 256 MB")
            arrays.append(np.ascontiguousarray(a))
            return len(arrays) - 1

        def enc(v, depth):
            budget["nodes"] += 1
            if budget["nodes"] > _MAX_NODES or depth > 30:
                raise _TooLarge("the output is too large or too deeply nested")
            t = type(v)
            if v is None or t is bool:
                return {"py": v}
            if t is int:
                return {"int": str(v)} if abs(v) < 2**63 else self._opaque(v)
            if t is float:
                return {"float": repr(v)}
            if t is str:
                return {"str": v[:2000]}
            if t is tuple or t is list:
                return {t.__name__: [enc(x, depth + 1) for x in v]}
            if t is dict:
                return {"dict": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]}
            if t is np.ndarray and v.dtype.kind in "biuf":
                return {"nd": array(v)}
            if isinstance(v, np.generic) and v.dtype.kind in "biuf":
                return {"np": array(np.asarray(v))}
            torch = sys.modules.get("torch")
            if torch is not None and t in (torch.Tensor, torch.nn.Parameter):
                d = v.detach().cpu()
                if d.dtype.is_floating_point or d.dtype in (torch.int64, torch.int32, torch.bool):
                    return {
                        "tensor": array(d.numpy().copy()),
                        "param": t is torch.nn.Parameter,
                        "requires_grad": bool(v.requires_grad),
                    }
            return self._opaque(v)

        return enc(value, 0)

    def _opaque(self, v):
        key = len(self.store)
        self.store[key] = v
        t = type(v)
        try:
            text = " ".join(builtins.repr(v).split())[:200]
        except Exception:  # noqa: BLE001
            text = "?"
        name = getattr(v, "__name__", None)
        return {
            "ref": key,
            "module": str(getattr(t, "__module__", "?")),
            "qualname": str(getattr(t, "__qualname__", "?")),
            "repr": text,
            "callable": callable(v),
            "class": isinstance(v, type),
            "name": name if isinstance(name, str) else None,
        }

    def _answer(self, n, build):
        arrays = []
        try:
            answer = build(arrays)
        except _TooLarge as e:
            arrays, answer = [], {"failed": str(e)}
        except BaseException as e:  # noqa: BLE001 - reported, whatever it is
            arrays, answer = [], {"failed": f"the grader's agent failed: {type(e).__name__}: {e}"}
        self._write(n, answer, arrays)

    # --- requests -------------------------------------------------------------------------------

    def describe(self, n, names):
        def build(arrays):
            found = {}
            for name in names:
                if name not in self.ns:
                    continue
                v = self.ns[name]
                entry = {"value": self._encode(v, arrays)}
                why = self._forbidden_object(v)
                if why:
                    entry["policy"] = why
                found[name] = entry
            return {"names": found}

        self._answer(n, build)

    def call(self, n):
        def build(arrays):
            with builtins.open(os.path.join(self.req, f"req-{n}.pkl"), "rb") as f:
                request = _Unpickler(f, self.store).load()
            target, args = request["target"], list(request["args"])
            if isinstance(target, tuple):  # ("bnlib", module, qualname): a helper driving objects
                fn = __import__(target[1], fromlist=["_"])
                for part in target[2].split("."):
                    fn = getattr(fn, part)
            else:
                fn = target
            before = [self._snapshot(a) for a in args]
            self.violations = []
            self.given = {id(m) for a in args for m in _modules(a)}  # norm layers we passed in
            why = None if isinstance(target, tuple) else self._forbidden_object(fn)
            if why:
                self.violations.append(why)
            answer = {}
            old = sys.getprofile()
            sys.setprofile(self._profile)
            try:
                with np.errstate(all="ignore"):
                    result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt: failures
                sys.setprofile(old)
                answer["raised"] = self._exception(e)
            else:
                sys.setprofile(old)
                answer["value"] = self._encode(result, arrays)
            answer["after"] = {
                str(i): self._after(a, b, arrays)
                for i, (a, b) in enumerate(zip(args, before, strict=True))
                if b is not None
            }
            answer["policy"] = sorted(set(self.violations))
            return answer

        self._answer(n, build)

    # --- arguments changed by the call ----------------------------------------------------------

    def _snapshot(self, a):
        torch = sys.modules.get("torch")
        if type(a) is np.ndarray:
            return a.copy()
        if torch is not None and isinstance(a, torch.Tensor):
            return a.detach().clone()
        if torch is not None and isinstance(a, torch.nn.Module):
            return "module"
        return None

    def _after(self, a, before, arrays):
        torch = sys.modules.get("torch")
        if type(a) is np.ndarray:
            return None if np.array_equal(a, before, equal_nan=True) else self._encode(a, arrays)
        if torch is not None and isinstance(a, torch.Tensor):
            same = a.shape == before.shape and torch.equal(a.detach(), before)
            return None if same else self._encode(a.detach().clone(), arrays)
        if isinstance(before, str):  # a torch module: its state, modes and hooks
            return {
                "module": {
                    "state": self._encode(
                        {k: v.detach().clone() for k, v in a.state_dict().items()}, arrays
                    ),
                    "training": {k: bool(m.training) for k, m in a.named_modules()},
                    "hooks": {
                        k: len(m._forward_hooks)
                        + len(m._forward_pre_hooks)
                        + len(m._backward_hooks)
                        for k, m in a.named_modules()
                    },
                }
            }
        return None

    def _exception(self, e):
        tb, where = e.__traceback__, None
        while tb is not None:
            code = tb.tb_frame.f_code
            if self._learner(code.co_filename):
                where = f"line {tb.tb_lineno} of {code.co_name}"
            tb = tb.tb_next
        try:
            message = " ".join(str(e).split())[:300]
        except Exception:  # noqa: BLE001
            message = "?"
        t = type(e)
        return {
            "module": str(getattr(t, "__module__", "?")),
            "name": str(getattr(t, "__qualname__", "?")),
            "message": message,
            "where": where,
            "bases": [c.__name__ for c in t.__mro__ if c.__module__ == "builtins"],
        }

    # --- the reference-implementation policy ----------------------------------------------------

    def _learner(self, filename):
        return filename != AGENT_FILE and (
            filename.startswith("<")
            or "ipykernel_" in filename
            or os.path.realpath(filename).startswith(self.work)
        )

    def _reference(self, code):
        key = (code.co_filename, code.co_name)
        if key in self.seen:
            return self.seen[key]
        filename, name, why = code.co_filename, code.co_name, None
        real = os.path.realpath(filename) if not filename.startswith("<") else filename
        base = os.path.basename(real)
        if real.startswith(self.bnlib_dirs) or "/bnlib/" in real:
            inside = real.rsplit(f"{os.sep}bnlib{os.sep}", 1)[-1]  # e.g. grading/engine.py
            parts = os.path.splitext(inside)[0].split(os.sep)  # e.g. ["grading", "engine"]
            top = len(parts) == 1
            if (
                (top and parts[0] in BNLIB_MODULES)
                or (not top and parts[0] in BNLIB_PACKAGES)  # the exercises' references, engine
                or (top and name in BNLIB_FUNCTIONS.get(parts[0], ()))
            ):
                why = "bnlib." + ".".join(parts) + f".{name}"
        elif real.endswith(os.path.join("torch", "nn", "functional.py")):
            if name in NORM_FUNCTIONS:
                why = f"torch.nn.functional.{name}"
        elif os.path.join("torch", "nn", "modules", "") in real and base[:-3] in NORM_MODULES:
            if name == "forward":
                why = f"torch.nn's {base[:-3]} modules"
        self.seen[key] = why
        return why

    def _profile(self, frame, event, arg):
        if event != "call":
            return
        why = self._reference(frame.f_code)
        if why is None or self._given(frame, why):
            return
        caller = frame.f_back
        while caller is not None and caller.f_code.co_filename != AGENT_FILE:
            if self._reference(caller.f_code):
                return  # inside a reference: its own call was seen (and judged) already
            if self._learner(caller.f_code.co_filename):
                self.violations.append(why)
                return
            caller = caller.f_back

    def _given(self, frame, why):
        return (
            why is not None
            and why.startswith("torch.nn's")
            and id(frame.f_locals.get("self")) in self.given
        )

    def _forbidden_object(self, v):
        """Why `v` itself is a reference implementation (or a class built on one), else None."""
        code = getattr(v, "__code__", None)
        if code is not None and self._reference(code):
            return self._reference(code)
        if isinstance(v, type):
            for base in v.__mro__[1:]:
                forward = base.__dict__.get("forward")
                code = getattr(forward, "__code__", None)
                if code is not None and self._reference(code):
                    return f"{base.__module__}.{base.__qualname__}"
        return None


def _modules(a):
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(a, torch.nn.Module):
        return list(a.modules())
    return []


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, store):
        super().__init__(f)
        self._store = store

    def persistent_load(self, pid):
        return self._store[pid[1]]
