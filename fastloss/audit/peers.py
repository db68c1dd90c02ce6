"""The implementations the audit measures side by side.

Each implementation is an adapter: it maps a loss name and its parameters to
one library's call *with that library's semantics* (PyTorch's BCE clamps the
log at -100, its ``poisson_nll_loss`` adds ``eps=1e-8``; the adapter does not
correct them: that is what is being measured), evaluates the values with
``reduction="none"`` and the gradient of their sum, in the audited dtype.

- ``fastloss-cpu``: ``fastloss.value_and_grad(..., reduction="none")``;
- ``fastloss-cuda``: the same on device arrays, on a GPU, or under Numba's
  CUDA simulator on a subsample of the grid (a subprocess, since the
  simulator must be chosen before numba is imported);
- ``numpy``: the textbook formula of each loss, written the obvious way
  (``log(1 + exp(-x))``, ``log(cosh(d))``, the analytic gradient as printed),
  evaluated in the dtype. It is the baseline the stable formulas improve on,
  and the audit's proof that it can fail;
- ``torch``: ``torch.nn.functional``, gradients by autograd;
- ``jax``: ``optax.losses`` under ``jax_enable_x64``, gradients by ``jax.vjp``;
- ``torchvision``: ``torchvision.ops``' box losses and
  ``sigmoid_focal_loss``, gradients by autograd (``torchvision_losses``:
  from torchvision's own source files when a wheel built for another torch
  cannot be imported);
- ``tensorflow``: ``tf.keras.losses``, gradients by ``tf.GradientTape``;
- ``sklearn``: ``sklearn.metrics``, values only (no gradients), per element.

A peer whose library is not installed is skipped with a line saying so; a
loss a peer does not have is "n/a" for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

from fastloss.audit.grids import Block


class Impl:
    key = ""
    label = ""
    is_fastloss = False
    #: evaluate at most this many elements per block (None: all); the CUDA simulator samples
    sample: int | None = None

    def unavailable(self) -> str | None:
        """None if usable, else why not (a missing library...)."""
        return None

    def supports(self, block: Block) -> bool:
        return True

    def evaluate(self, block: Block) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def evaluate_many(self, blocks: list[Block]) -> list:
        """[(value, grad, index or None) or an Exception] per block."""
        out = []
        for b in blocks:
            try:
                r = self.evaluate(b)
                v, g = r[0], r[1]
                idx = r[2] if len(r) > 2 else None
                out.append((np.asarray(v), None if g is None else np.asarray(g), idx))
            except Exception as e:  # noqa: BLE001 - reported per block
                out.append(e)
        return out


def _fl_params(block: Block) -> dict:
    """The block's parameters as fastloss takes them; pos_weight only where
    it is not 1 throughout: a block of pos_weight 1 is audited as users call
    the loss, without it, which for BCE with logits takes the kernel of its
    defaults (``LossSpec.fixed``; float32 data: float32 lanes,
    ``math._cpu.logistic_loss32``). The blocks of other weights (1 among
    them) audit the kernel that reads pos_weight per element."""
    p = dict(block.params)
    if block.q is not None and not np.all(block.q == 1):
        p["pos_weight"] = block.q
    return p


class FastlossCPU(Impl):
    key = "fastloss-cpu"
    label = "fastloss CPU"
    is_fastloss = True

    def evaluate(self, block):
        import fastloss as fl

        return fl.value_and_grad(block.loss, block.x, block.y, reduction="none", **_fl_params(block))

    def start_many(self, blocks):
        """Start evaluating ``blocks``: the float64 blocks in a subprocess,
        the others in this process when the returned function is called.
        Numba compiles a kernel per loss and dtype on first use (minutes in
        all on a cold cache); this compiles the two dtypes' kernels on two
        cores. Results are the same: the same kernels on the same inputs."""
        far = [i for i, b in enumerate(blocks) if b.x.dtype == np.float64]
        if not far or len(far) == len(blocks) or os.environ.get("FASTLOSS_AUDIT_INPROCESS"):
            far = []
        wait = _start_subprocess("cpu", [blocks[i] for i in far], [None] * len(far),
                                 {"NUMBA_ENABLE_CUDASIM": "0"}) if far else None

        def finish(tick=lambda k: None):
            out: list = [None] * len(blocks)
            farset = set(far)
            for i, b in enumerate(blocks):  # one block at a time, for the progress bar
                if i not in farset:
                    out[i] = self.evaluate_many([b])[0]
                    tick(1)
            if wait is not None:
                for i, r in zip(far, wait(tick), strict=True):
                    out[i] = r
            return out

        return finish


def _sample_index(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over range(n) (all of them if n <= k), deterministic."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


class FastlossCUDA(Impl):
    """On a GPU: device arrays in this process. Without one: the CUDA
    simulator in a subprocess, on ``sample`` elements per block."""

    key = "fastloss-cuda"
    is_fastloss = True

    def __init__(self, sample: int = 48, simulator: bool | None = None):
        self._sample = sample
        self._sim = simulator

    def _on_gpu(self) -> bool:
        if self._sim is not None:
            return not self._sim
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            return False
        try:
            from numba import cuda

            return bool(cuda.is_available())
        except Exception:  # noqa: BLE001
            return False

    @property
    def sample(self):
        return None if self._on_gpu() else self._sample

    @property
    def label(self):  # noqa: D401
        return "fastloss CUDA" if self._on_gpu() else "fastloss CUDA (simulator)"

    def unavailable(self):
        try:
            importlib.import_module("fastloss.cuda.api")
        except ImportError as e:
            return f"the CUDA backend (fastloss.cuda.api) is not in this build ({e})"
        return None

    #: the CUDA module of each non-elementwise grid kind (fastloss.cuda.api's mapping)
    _MODULES = {"rows": "fastloss.cuda.rowwise", "boxes": "fastloss.cuda.boxes"}

    def supports(self, block):
        """Elementwise losses; rows and boxes when this build has their CUDA
        kernels (else the losses are "–" for CUDA, rather than an error per
        block from the simulator)."""
        mod = self._MODULES.get(block.kind)
        return mod is None or importlib.util.find_spec(mod) is not None

    def missing_kinds(self) -> list[str]:
        return [k for k, m in self._MODULES.items() if importlib.util.find_spec(m) is None]

    def evaluate_many(self, blocks):
        return self.start_many(blocks)()

    def start_many(self, blocks):
        """Start evaluating ``blocks``; returns ``finish(tick)``, which waits and
        returns what ``evaluate_many`` returns. Under the simulator the work
        runs in a subprocess, so the audit overlaps it with everything else."""
        if self._on_gpu():
            return _ticking(lambda: _cuda_evaluate_blocks(blocks), len(blocks))
        idxs = [_sample_index(len(b), self._sample) for b in blocks]
        return _start_subprocess("cuda-simulator", blocks, idxs, {"NUMBA_ENABLE_CUDASIM": "1"})


def _ticking(f, n):
    """``finish(tick)`` that calls ``f()`` and then ``tick(n)``."""
    def finish(tick=lambda k: None):
        out = f()
        tick(n)
        return out

    return finish


def _start_subprocess(mode: str, blocks, idxs, env: dict):
    """Evaluate ``blocks`` (the elements ``idxs[i]`` of block i, or all of
    them where it is None) in ``python -m fastloss.audit.peers MODE IN OUT``;
    returns ``finish(tick)``, which waits for it, calls ``tick(len(blocks))``
    and returns [(value, grad, index) or an Exception] per block."""
    td = tempfile.TemporaryDirectory()
    src = os.path.join(td.name, "in.npz")
    dst = os.path.join(td.name, "out.npz")
    arrays = {}
    for i, (b, idx) in enumerate(zip(blocks, idxs, strict=True)):
        sel = slice(None) if idx is None else idx
        arrays[f"x{i}"] = b.x[sel]
        arrays[f"y{i}"] = b.y[sel]
        if b.q is not None:
            arrays[f"q{i}"] = b.q[sel]
        arrays[f"meta{i}"] = np.array(repr((b.loss, b.params, b.kind)))
    np.savez(src, n=len(blocks), **arrays)
    errf = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "fastloss.audit.peers", mode, src, dst],
                            env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
                            stderr=errf, text=True)

    def finish(tick=lambda k: None):
        try:
            rc = proc.wait()
            tick(len(blocks))
            if rc != 0:
                errf.seek(0)
                err = RuntimeError(f"{mode} subprocess failed: " + errf.read().strip()[-500:])
                return [err] * len(blocks)
            out = []
            with np.load(dst, allow_pickle=False) as z:
                for i, idx in enumerate(idxs):
                    if f"err{i}" in z:
                        out.append(RuntimeError(str(z[f"err{i}"])))
                    else:
                        out.append((z[f"v{i}"], z[f"g{i}"], idx))
            return out
        finally:
            errf.close()
            td.cleanup()

    return finish


def _cuda_evaluate_blocks(blocks, idxs=None):
    from numba import cuda

    import fastloss as fl

    out = []
    for i, b in enumerate(blocks):
        idx = None if idxs is None else idxs[i]
        sel = slice(None) if idx is None else idx
        try:
            p = dict(b.params)
            if b.q is not None:
                p["pos_weight"] = cuda.to_device(np.ascontiguousarray(b.q[sel]))
            x = cuda.to_device(np.ascontiguousarray(b.x[sel]))
            y = cuda.to_device(np.ascontiguousarray(b.y[sel]))
            v, g = fl.value_and_grad(b.loss, x, y, reduction="none", **p)
            v = v.copy_to_host() if hasattr(v, "copy_to_host") else np.asarray(v)
            g = g.copy_to_host() if hasattr(g, "copy_to_host") else np.asarray(g)
            out.append((v, g, idx))
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out


def _subprocess_main(mode: str, src: str, dst: str) -> int:
    """Subprocess entry: evaluate the blocks in ``src`` with fastloss on the
    CPU (mode "cpu") or on CUDA arrays under the simulator ("cuda-simulator")."""
    import ast

    with np.load(src, allow_pickle=False) as z:
        n = int(z["n"])
        blocks = []
        for i in range(n):
            loss, params, kind = ast.literal_eval(str(z[f"meta{i}"]))
            q = z[f"q{i}"] if f"q{i}" in z else None
            blocks.append(Block(loss, params, z[f"x{i}"], z[f"y{i}"], q=q, kind=kind))
    if mode == "cpu":
        res = FastlossCPU().evaluate_many(blocks)
        res = [r if isinstance(r, Exception) else r[:2] for r in res]
    else:
        res = _cuda_evaluate_blocks(blocks)
    arrays = {}
    for i, r in enumerate(res):
        if isinstance(r, Exception):
            arrays[f"err{i}"] = np.array(f"{type(r).__name__}: {r}")
        else:
            arrays[f"v{i}"], arrays[f"g{i}"] = r[0], r[1]
    np.savez(dst, **arrays)
    return 0


# ---------------------------------------------------------------------------
# NumPy: the textbook formulas


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _np_formulas():
    def mse(x, y, q, p):
        d = x - y
        return d * d, 2 * d

    def mae(x, y, q, p):
        d = x - y
        return np.abs(d), np.sign(d)

    def msle(x, y, q, p):
        r = np.log1p(x) - np.log1p(y)
        return r * r, 2 * r / (1 + x)

    def huber(x, y, q, p):
        dl = x.dtype.type(p["delta"])
        d = x - y
        a = np.abs(d)
        return np.where(a <= dl, 0.5 * d * d, dl * (a - 0.5 * dl)), np.clip(d, -dl, dl)

    def smooth_l1(x, y, q, p):
        b = x.dtype.type(p["beta"])
        d = x - y
        a = np.abs(d)
        return np.where(a < b, 0.5 * d * d / b, a - 0.5 * b), np.where(a < b, d / b, np.sign(d))

    def pseudo_huber(x, y, q, p):
        dl = x.dtype.type(p["delta"])
        d = x - y
        s = np.sqrt(1 + (d / dl) ** 2)
        return dl * dl * (s - 1), d / s

    def log_cosh(x, y, q, p):
        d = x - y
        return np.log(np.cosh(d)), np.tanh(d)

    def quantile(x, y, q, p):
        t = x.dtype.type(p["tau"])
        r = y - x
        return np.maximum(t * r, (t - 1) * r), np.where(r > 0, -t, 1 - t)

    def poisson_nll(x, y, q, p):
        if p["log_input"]:
            return np.exp(x) - y * x, np.exp(x) - y
        return x - y * np.log(x), 1 - y / x

    def bce(x, y, q, p):
        return -(y * np.log(x) + (1 - y) * np.log(1 - x)), (x - y) / (x * (1 - x))

    def bce_logits(x, y, q, p):
        eps = x.dtype.type(p.get("label_smoothing", 0.0))
        y = y * (1 - eps) + eps / 2
        s = _sig(x)
        v = -(q * y * np.log(s) + (1 - y) * np.log(1 - s))
        return v, (1 - y) * s - q * y * (1 - s)

    def focal(x, y, q, p):
        g = x.dtype.type(p["gamma"])
        s = _sig(x)
        ce = -(y * np.log(s) + (1 - y) * np.log(1 - s))
        one_m_pt = 1 - (s * y + (1 - s) * (1 - y))
        m = one_m_pt**g
        dce = s - y
        dm = g * one_m_pt ** (g - 1) * (1 - 2 * y) * s * (1 - s)
        v, gr = m * ce, dm * ce + m * dce
        if p["alpha"] is not None:
            a = x.dtype.type(p["alpha"])
            at = a * y + (1 - a) * (1 - y)
            v, gr = at * v, at * gr
        return v, gr

    def hinge(x, y, q, p):
        y = np.where(y == 0, -1, y).astype(x.dtype)
        return np.maximum(0, 1 - y * x), np.where(y * x < 1, -y, 0).astype(x.dtype)

    def squared_hinge(x, y, q, p):
        y = np.where(y == 0, -1, y).astype(x.dtype)
        m = np.maximum(0, 1 - y * x)
        return m * m, -2 * y * m

    def soft_margin(x, y, q, p):
        y = np.where(y == 0, -1, y).astype(x.dtype)
        e = np.exp(-y * x)
        return np.log(1 + e), -y * e / (1 + e)

    return {
        "mse": mse, "mae": mae, "msle": msle, "huber": huber, "smooth_l1": smooth_l1,
        "pseudo_huber": pseudo_huber, "log_cosh": log_cosh, "quantile": quantile,
        "poisson_nll": poisson_nll, "binary_cross_entropy": bce,
        "binary_cross_entropy_with_logits": bce_logits, "sigmoid_focal": focal,
        "hinge": hinge, "squared_hinge": squared_hinge, "soft_margin": soft_margin,
    }


def _np_rows():
    def cross_entropy(x, y, p):
        e = np.exp(x)
        s = e / e.sum(axis=1, keepdims=True)
        C = x.shape[1]
        if y.ndim == 1:
            t = np.eye(C, dtype=x.dtype)[y]
        else:
            t = y
        eps = x.dtype.type(p.get("label_smoothing", 0.0))
        t = t * (1 - eps) + eps / C
        return -(t * np.log(s)).sum(axis=1), s * t.sum(axis=1, keepdims=True) - t

    def nll(x, y, p):
        C = x.shape[1]
        t = np.eye(C, dtype=x.dtype)[y]
        return -(t * x).sum(axis=1), -t

    def kl_div(x, y, p):
        if p.get("log_target", False):
            et = np.exp(y)
            return (et * (y - x)).sum(axis=1), -et
        return (y * (np.log(y) - x)).sum(axis=1), -y

    def categorical_cross_entropy(x, y, p):
        return -(y * np.log(x)).sum(axis=1), -y / x

    return {"cross_entropy": cross_entropy, "nll": nll, "kl_div": kl_div,
            "categorical_cross_entropy": categorical_cross_entropy}


class NumpyTextbook(Impl):
    key = "numpy"
    label = "NumPy textbook"

    def __init__(self):
        self._f = _np_formulas()
        self._r = _np_rows()

    def supports(self, block):
        if block.kind == "boxes":
            return False
        return block.loss in (self._r if block.kind == "rows" else self._f)

    def evaluate(self, block):
        with np.errstate(all="ignore"):
            if block.kind == "rows":
                v, g = self._r[block.loss](block.x, block.y, block.params)
            else:
                q = block.q if block.q is not None else block.x.dtype.type(1)
                v, g = self._f[block.loss](block.x, block.y, q, block.params)
        dt = block.x.dtype
        return np.asarray(v).astype(dt), np.broadcast_to(np.asarray(g), block.x.shape).astype(dt)


# ---------------------------------------------------------------------------
# PyTorch


class Torch(Impl):
    key = "torch"
    label = "PyTorch"

    def unavailable(self):
        try:
            import torch  # noqa: F401
        except ImportError:
            return "PyTorch is not installed (pip install torch)"
        return None

    def _fn(self, block):
        import torch
        import torch.nn.functional as F

        p = block.params
        name = block.loss
        if block.kind == "rows":
            if name == "cross_entropy":
                return lambda x, y: F.cross_entropy(
                    x, y, reduction="none", label_smoothing=p.get("label_smoothing", 0.0))
            if name == "nll":
                return lambda x, y: F.nll_loss(x, y, reduction="none")
            if name == "multi_margin":
                return lambda x, y: F.multi_margin_loss(x, y, p=p.get("p", 1),
                                                        margin=p.get("margin", 1.0), reduction="none")
            if name == "kl_div":
                return lambda x, y: F.kl_div(x, y, reduction="none",
                                             log_target=p.get("log_target", False)).sum(dim=1)
            return None  # categorical_cross_entropy: no torch.nn.functional counterpart
        if block.kind == "boxes":
            return None  # PyTorch has no box losses: see the torchvision adapter
        simple = {
            "mse": lambda x, y: F.mse_loss(x, y, reduction="none"),
            "mae": lambda x, y: F.l1_loss(x, y, reduction="none"),
            "binary_cross_entropy": lambda x, y: F.binary_cross_entropy(x, y, reduction="none"),
        }
        if name in simple:
            return simple[name]
        if name == "huber":
            return lambda x, y: F.huber_loss(x, y, reduction="none", delta=p["delta"])
        if name == "smooth_l1":
            return lambda x, y: F.smooth_l1_loss(x, y, reduction="none", beta=p["beta"])
        if name == "poisson_nll":
            return lambda x, y: F.poisson_nll_loss(x, y, log_input=p["log_input"], full=False,
                                                   reduction="none")
        if name == "soft_margin":
            return lambda x, y: F.soft_margin_loss(x, torch.where(y == 0, -1.0, y).to(y.dtype),
                                                   reduction="none")
        if name == "binary_cross_entropy_with_logits":
            eps = p.get("label_smoothing", 0.0)
            q = None if block.q is None else torch.from_numpy(np.ascontiguousarray(block.q))
            return lambda x, y: F.binary_cross_entropy_with_logits(
                x, y * (1 - eps) + eps / 2 if eps else y, pos_weight=q, reduction="none")
        return None  # sigmoid_focal: see the torchvision adapter

    def supports(self, block):
        return self._fn(block) is not None

    def evaluate(self, block):
        import torch

        f = self._fn(block)
        x = torch.from_numpy(np.array(block.x)).requires_grad_(True)
        y = torch.from_numpy(np.array(block.y))
        v = f(x, y)
        v.sum().backward()
        return v.detach().numpy(), x.grad.numpy()


# ---------------------------------------------------------------------------
# JAX / optax


class Optax(Impl):
    key = "jax"
    label = "JAX/optax"

    def unavailable(self):
        try:
            import jax  # noqa: F401
            import optax  # noqa: F401
        except ImportError:
            return "JAX/optax is not installed (pip install jax optax)"
        return None

    def _fn(self, block):
        import jax.numpy as jnp
        import optax

        L = getattr(optax, "losses", optax)
        p = block.params
        name = block.loss
        if block.kind == "rows":
            if name == "cross_entropy" and block.y.ndim == 1 and not p.get("label_smoothing"):
                return lambda x, y: L.softmax_cross_entropy_with_integer_labels(x, y)
            if name == "cross_entropy" and block.y.ndim == 2 and not p.get("label_smoothing"):
                return lambda x, y: L.softmax_cross_entropy(x, y)
            return None
        table = {
            "mse": lambda x, y: L.squared_error(x, y),
            "log_cosh": lambda x, y: L.log_cosh(x, y),
            "huber": lambda x, y: L.huber_loss(x, y, delta=p["delta"]),
            "hinge": lambda x, y: L.hinge_loss(x, jnp.where(y == 0, -1.0, y)),
            "binary_cross_entropy_with_logits": (
                (lambda x, y: L.sigmoid_binary_cross_entropy(x, y))
                if not p.get("label_smoothing") and (block.q is None or np.all(block.q == 1))
                else None),
            "sigmoid_focal": lambda x, y: L.sigmoid_focal_loss(
                x, y, alpha=p["alpha"], gamma=p["gamma"]),
        }
        return table.get(name)

    def supports(self, block):
        return self._fn(block) is not None

    def evaluate(self, block):
        import jax

        jax.config.update("jax_enable_x64", True)
        f = self._fn(block)
        y = jax.numpy.asarray(block.y)
        v, vjp = jax.vjp(lambda x: f(x, y), jax.numpy.asarray(block.x))
        (g,) = vjp(jax.numpy.ones_like(v))
        return np.asarray(v), np.asarray(g)


# ---------------------------------------------------------------------------
# torchvision (box losses, focal loss)

#: the pure-Python files of torchvision's losses, in import order
_TV_FILES = ("_utils", "diou_loss", "giou_loss", "ciou_loss", "focal_loss")
#: the private package the files are loaded into when ``import torchvision`` fails
_TV_SHIM = "_fastloss_torchvision_shim"
_TV_CACHE: dict = {}


def torchvision_losses():
    """torchvision's losses, or None when torchvision is not installed.

    Returns a namespace with ``generalized_box_iou_loss``,
    ``distance_box_iou_loss``, ``complete_box_iou_loss``,
    ``sigmoid_focal_loss`` (torchvision's own functions),
    ``loss_inter_union`` (``torchvision.ops._utils._loss_inter_union``, the
    per-pair intersection and union the box losses use) and ``source``
    (where they came from).

    ``import torchvision.ops`` when that works. A torchvision wheel built
    for another torch (its C++ operators fail to register: "operator
    torchvision::nms does not exist") cannot be imported at all, but these
    losses are pure Python: ``torchvision/ops/{_utils, diou_loss, giou_loss,
    ciou_loss, focal_loss}.py``, importing only torch, each other and
    ``torchvision.utils._log_api_usage_once``. Then those five files are
    loaded from the installed package directory (found without executing
    ``torchvision/__init__.py``) into a private package with a no-op
    ``_log_api_usage_once``. Raises ImportError when torchvision is
    installed but neither way works (or torch is missing)."""
    if "ns" not in _TV_CACHE:
        _TV_CACHE["ns"] = _load_torchvision_losses()
    return _TV_CACHE["ns"]


def torchvision_focal(alpha, gamma):
    """torchvision's ``sigmoid_focal_loss`` as f(x, y, reduction) with
    fastloss' parameters: alpha=None (no alpha_t factor) is torchvision's
    alpha = -1. For the audit's adapter and the benchmark's peer."""
    focal = torchvision_losses().sigmoid_focal_loss
    a = -1 if alpha is None else alpha
    return lambda x, y, reduction="none": focal(x, y, alpha=a, gamma=gamma, reduction=reduction)


def _torchvision_dir():
    """The installed torchvision package directory, or None; its
    ``__init__.py`` is not executed."""
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    try:
        import importlib.metadata as md

        init = md.distribution("torchvision").locate_file("torchvision/__init__.py")
    except Exception:
        return None
    return os.path.dirname(str(init)) if os.path.exists(str(init)) else None


def _load_torchvision_losses():
    import types

    tv_dir = _torchvision_dir()
    if tv_dir is None:
        return None
    try:
        import torchvision.ops as ops
        from torchvision.ops import _utils

        return types.SimpleNamespace(
            generalized_box_iou_loss=ops.generalized_box_iou_loss,
            distance_box_iou_loss=ops.distance_box_iou_loss,
            complete_box_iou_loss=ops.complete_box_iou_loss,
            sigmoid_focal_loss=ops.sigmoid_focal_loss,
            loss_inter_union=_utils._loss_inter_union, source="torchvision.ops")
    except Exception as e:  # noqa: BLE001 - any failure of torchvision's own import
        why = f"{type(e).__name__}: {e}"
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ImportError(f"torchvision is installed but torch is not ({e})") from e
    ops_dir = os.path.join(tv_dir, "ops")
    if _TV_SHIM not in sys.modules:
        pkg = types.ModuleType(_TV_SHIM)
        pkg.__path__ = []
        utils = types.ModuleType(_TV_SHIM + ".utils")
        utils._log_api_usage_once = lambda obj: None
        sub = types.ModuleType(_TV_SHIM + ".ops")
        sub.__path__ = []
        mods = {}
        for name in _TV_FILES:
            path = os.path.join(ops_dir, name + ".py")
            spec = importlib.util.spec_from_file_location(f"{_TV_SHIM}.ops.{name}", path)
            if spec is None or not os.path.exists(path):
                raise ImportError(f"import torchvision failed ({why}), and {path} is missing")
            mods[name] = (spec, importlib.util.module_from_spec(spec))
        added = [_TV_SHIM, _TV_SHIM + ".utils", _TV_SHIM + ".ops"]
        sys.modules.update({_TV_SHIM: pkg, _TV_SHIM + ".utils": utils, _TV_SHIM + ".ops": sub})
        try:
            for name, (spec, mod) in mods.items():
                sys.modules[spec.name] = mod
                added.append(spec.name)
                spec.loader.exec_module(mod)
                setattr(sub, name, mod)
        except Exception as e:
            for k in added:
                sys.modules.pop(k, None)
            raise ImportError(f"import torchvision failed ({why}), and loading its loss "
                              f"files from {ops_dir} failed: {type(e).__name__}: {e}") from e
    sub = sys.modules[_TV_SHIM + ".ops"]
    return types.SimpleNamespace(
        generalized_box_iou_loss=sub.giou_loss.generalized_box_iou_loss,
        distance_box_iou_loss=sub.diou_loss.distance_box_iou_loss,
        complete_box_iou_loss=sub.ciou_loss.complete_box_iou_loss,
        sigmoid_focal_loss=sub.focal_loss.sigmoid_focal_loss,
        loss_inter_union=sub._utils._loss_inter_union,
        source=f"{ops_dir}/{{{', '.join(_TV_FILES)}}}.py (import torchvision failed: {why})")


class Torchvision(Impl):
    """torchvision's ``generalized_box_iou_loss``, ``distance_box_iou_loss``,
    ``complete_box_iou_loss`` (``reduction="none"``, torchvision's default
    ``eps=1e-7``), the IoU loss as 1 - I/U with torchvision's per-pair
    intersection and union (``_loss_inter_union``, what its box losses use)
    and ``sigmoid_focal_loss`` (RetinaNet's focal loss: alpha = -1 for
    fastloss' alpha=None); gradients by autograd. The functions come from
    ``torchvision_losses``: ``torchvision.ops``, or, when torchvision is
    installed but cannot be imported (a wheel built for another torch), its
    pure-Python loss files."""

    key = "torchvision"
    label = "torchvision"

    def unavailable(self):
        try:
            import torch  # noqa: F401
        except ImportError:
            return "PyTorch is not installed (pip install torch)"
        try:
            tv = torchvision_losses()
        except Exception as e:  # noqa: BLE001 - a broken install must not stop the audit
            return f"torchvision's losses cannot be loaded: {e}"
        if tv is None:
            return "torchvision is not installed (pip install torchvision)"
        return None

    def supports(self, block):
        if block.kind == "boxes":
            return block.loss in ("iou_loss", "giou_loss", "diou_loss", "ciou_loss")
        return block.kind != "rows" and block.loss == "sigmoid_focal"

    def evaluate(self, block):
        import torch

        tv = torchvision_losses()
        if block.loss == "sigmoid_focal":
            f = torchvision_focal(block.params["alpha"], block.params["gamma"])
        else:
            def iou_loss(p, t, reduction="none"):
                inter, union = tv.loss_inter_union(p, t)
                return 1 - inter / union

            f = {"iou_loss": iou_loss, "giou_loss": tv.generalized_box_iou_loss,
                 "diou_loss": tv.distance_box_iou_loss,
                 "ciou_loss": tv.complete_box_iou_loss}[block.loss]
        x = torch.from_numpy(np.array(block.x)).requires_grad_(True)
        y = torch.from_numpy(np.array(block.y))
        v = f(x, y, reduction="none")
        v.sum().backward()
        return v.detach().numpy(), x.grad.numpy()


# ---------------------------------------------------------------------------
# scikit-learn (values only)


class Sklearn(Impl):
    """``sklearn.metrics``, which returns means and no gradients: the audit
    measures **values only** (the gradient columns stay empty), per element,
    one element at a time (``log_loss``, ``hinge_loss``) or with
    ``multioutput="raw_values"`` on a (1, n) row (the regression metrics,
    whose mean over one sample is the element's loss):

    - ``mse``: ``mean_squared_error``; ``mae``: ``mean_absolute_error``;
      ``msle``: ``mean_squared_log_error``; ``quantile``: ``mean_pinball_loss``
      (``alpha`` = tau);
    - ``binary_cross_entropy``: ``log_loss([y], [p], labels=[0, 1])`` on hard
      targets y in {0, 1} (sklearn takes no soft targets); it clips p to
      [eps, 1 - eps] (eps of p's dtype): the audit measures that;
    - ``categorical_cross_entropy``: ``log_loss([label], [row])`` on the
      one-hot-target blocks;
    - ``hinge``: ``hinge_loss([y, -y], [x, 0], labels=[-1, 1],
      sample_weight=[1, 0])`` (on one sample sklearn reads the label set from
      ``y_true`` and returns 0 for y = 1), y = 0 read as -1.

    Inputs sklearn refuses (it raises: infinities, msle's x <= -1) are left
    out of its statistics."""

    key = "sklearn"
    label = "scikit-learn"

    _RAW = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
            "msle": "mean_squared_log_error", "quantile": "mean_pinball_loss"}

    def unavailable(self):
        try:
            import sklearn.metrics  # noqa: F401
        except ImportError:
            return "scikit-learn is not installed (pip install scikit-learn)"
        return None

    def supports(self, block):
        if block.kind == "rows":
            return block.loss == "categorical_cross_entropy" and block.meta.get("one_hot", False)
        if block.kind != "elementwise":
            return False
        if block.loss == "binary_cross_entropy":
            return bool(np.any((block.y == 0) | (block.y == 1)))
        return block.loss in self._RAW or block.loss == "hinge"

    def _raw(self, block):
        import sklearn.metrics as M

        f = getattr(M, self._RAW[block.loss])
        kw = {"alpha": block.params["tau"]} if block.loss == "quantile" else {}

        def one(yv, xv):
            return f(yv.reshape(1, -1), xv.reshape(1, -1), multioutput="raw_values", **kw)

        try:
            return np.asarray(one(block.y, block.x)), None
        except ValueError:  # one refused element refuses the whole row: element by element
            idx, vals = [], []
            for i in range(len(block)):
                try:
                    vals.append(one(block.y[i:i + 1], block.x[i:i + 1])[0])
                    idx.append(i)
                except ValueError:
                    continue
            return np.asarray(vals), np.asarray(idx, dtype=np.int64)

    def evaluate(self, block):
        import warnings

        import sklearn.metrics as M

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if block.loss in self._RAW:
                v, idx = self._raw(block)
                return (v.astype(block.x.dtype), None) if idx is None else (
                    v.astype(block.x.dtype), None, idx)
            idx, vals = [], []
            dt = block.x.dtype
            for i in range(len(block)):
                x, y = block.x[i], block.y[i]
                try:
                    if block.loss == "binary_cross_entropy":
                        if y not in (0, 1):
                            continue
                        v = M.log_loss([int(y)], np.array([x], dtype=dt), labels=[0, 1])
                    elif block.loss == "hinge":
                        # on one sample hinge_loss reads the label set from y_true and
                        # returns 0 for y = 1: pair the element with a zero-weight sample
                        # of the other class
                        s = -1 if y <= 0 else 1
                        v = M.hinge_loss([s, -s], np.array([x, 0], dtype=dt), labels=[-1, 1],
                                         sample_weight=[1.0, 0.0])
                    else:  # categorical_cross_entropy, one-hot target rows
                        C = block.x.shape[1]
                        v = M.log_loss([int(np.argmax(y))], np.array([x], dtype=dt),
                                       labels=list(range(C)))
                except ValueError:
                    continue
                vals.append(v)
                idx.append(i)
        return np.asarray(vals, dtype=np.float64).astype(block.x.dtype), None, np.asarray(
            idx, dtype=np.int64)


# ---------------------------------------------------------------------------
# TensorFlow / Keras


class Keras(Impl):
    """``tf.keras.losses`` functions (per sample over the last axis: the
    elementwise losses are called on (n, 1) columns), gradients by
    ``tf.GradientTape``; float64 inputs stay float64 (``tf.constant`` of the
    array). Keras clips probabilities to [1e-7, 1 - 1e-7] in its
    probability-based cross-entropies: the audit measures that."""

    key = "tensorflow"
    label = "TensorFlow/Keras"

    def unavailable(self):
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            return "TensorFlow/Keras is not installed (pip install tensorflow)"
        return None

    def _fn(self, block):
        p = block.params
        name = block.loss
        if block.kind == "rows":
            if name == "categorical_cross_entropy":
                return lambda x, y: _keras("categorical_crossentropy")(y, x)
            if name == "cross_entropy" and block.y.ndim == 1 and not p.get("label_smoothing"):
                return lambda x, y: _keras("sparse_categorical_crossentropy")(y, x, from_logits=True)
            if name == "cross_entropy" and block.y.ndim == 2 and not p.get("label_smoothing"):
                return lambda x, y: _keras("categorical_crossentropy")(y, x, from_logits=True)
            return None
        if block.kind != "elementwise":
            return None

        def col(f):
            return lambda x, y: f(y[:, None], x[:, None])

        table = {
            "mse": "mean_squared_error", "mae": "mean_absolute_error",
            "msle": "mean_squared_logarithmic_error", "log_cosh": "log_cosh", "hinge": "hinge",
            "squared_hinge": "squared_hinge", "binary_cross_entropy": "binary_crossentropy",
        }
        if name in table:
            return col(_keras(table[name]))
        if name == "huber":
            return col(lambda y, x: _keras("huber")(y, x, delta=p["delta"]))
        if name == "poisson_nll" and not p["log_input"]:
            # Keras' poisson: y_pred - y_true log(y_pred + 1e-7) (its epsilon measured)
            return col(_keras("poisson"))
        if name == "binary_cross_entropy_with_logits" and not p.get("label_smoothing") and (
                block.q is None or np.all(block.q == 1)):
            return col(lambda y, x: _keras("binary_crossentropy")(y, x, from_logits=True))
        if name == "sigmoid_focal":
            # Keras' alpha_t = alpha y + (1 - alpha)(1 - y) with apply_class_balancing
            a = p["alpha"]
            return col(lambda y, x: _keras("binary_focal_crossentropy")(
                y, x, apply_class_balancing=a is not None, alpha=0.25 if a is None else a,
                gamma=p["gamma"], from_logits=True))
        return None

    def supports(self, block):
        return self._fn(block) is not None

    def evaluate(self, block):
        import tensorflow as tf

        f = self._fn(block)
        x = tf.Variable(np.array(block.x))
        y = tf.constant(np.array(block.y))
        with tf.GradientTape() as tape:
            v = f(x, y)
            s = tf.reduce_sum(v)
        g = tape.gradient(s, x)
        return np.asarray(v).reshape(len(block)), np.asarray(g)


def _keras(name):
    """The Keras loss function ``name``: ``keras.losses.<name>`` (Keras 3's
    names; ``tf.keras.losses`` of TensorFlow 2.16+ keeps only the short
    aliases, ``mse``, ``logcosh``, ...), else ``tf.keras.losses.<name>`` or
    its short alias (Keras 2)."""
    import tensorflow as tf

    short = {"mean_squared_error": "mse", "mean_absolute_error": "mae",
             "mean_squared_logarithmic_error": "msle", "log_cosh": "logcosh"}
    mods = [tf.keras.losses]
    try:
        import keras

        mods.insert(0, keras.losses)
    except ImportError:
        pass
    for mod in mods:
        for n in (name, short.get(name)):
            f = getattr(mod, n, None) if n else None
            if f is not None:
                return f
    raise AttributeError(f"Keras has no loss function {name!r}")


PEERS = {
    "numpy": NumpyTextbook,
    "torch": Torch,
    "jax": Optax,
    "torchvision": Torchvision,
    "tensorflow": Keras,
    "sklearn": Sklearn,
}

IMPLS = {"fastloss-cpu": FastlossCPU, "fastloss-cuda": FastlossCUDA, **PEERS}


def make(keys=None) -> list[Impl]:
    """Instances of the implementations ``keys`` (all by default)."""
    keys = list(IMPLS) if keys is None else list(keys)
    unknown = [k for k in keys if k not in IMPLS]
    if unknown:
        raise ValueError(f"--impl: unknown implementation(s) {', '.join(unknown)}; "
                         f"known: {', '.join(IMPLS)}")
    return [IMPLS[k]() for k in keys]


if __name__ == "__main__":  # the CPU and CUDA simulator subprocesses
    sys.exit(_subprocess_main(sys.argv[1], sys.argv[2], sys.argv[3]))
