"""fastloss for PyTorch: autograd Functions and ``nn.Module`` losses.

Swapping a PyTorch loss for fastloss' is one line::

    import fastloss.torch as flt
    criterion = flt.CrossEntropyLoss(label_smoothing=0.1)   # was torch.nn.CrossEntropyLoss
    loss = criterion(logits, labels)
    loss.backward()

What is here (all generated from ``fastloss.catalog``, so a new loss appears
without editing this module):

- ``FUNCTIONS[name]``: one ``torch.autograd.Function`` per loss (also
  attributes such as ``CrossEntropyFunction``). Its forward pass calls the
  fused kernel once and keeps the gradient of the loss; its backward pass only
  scales that gradient by the incoming one, with no second kernel.
- One function per loss, named as in fastloss (``flt.huber(input, target,
  reduction="mean", delta=1.0)``), and ``flt.loss(name, input, target, ...)``.
- ``nn.Module`` classes named and parameterised as in ``torch.nn`` where
  PyTorch has the same loss (``TORCH_EQUIVALENTS``: ``MSELoss``,
  ``CrossEntropyLoss``, ``BCEWithLogitsLoss``, ...), and in fastloss' own
  names otherwise (``LogCoshLoss``, ``SigmoidFocalLoss``, ...; ``MODULES``
  lists every class), plus the generic ``Loss(name, reduction=..., **params)``.

Rules:
- Gradients flow to ``input`` only. A ``target`` (or ``weight``/``pos_weight``
  tensor) that requires grad is refused with a ValueError rather than given a
  silent zero gradient.
- CPU tensors reach the kernels without copies: NumPy views of the tensors'
  memory, and the gradient is written straight into a tensor's buffer.
  Non-contiguous tensors are accepted (fastloss copies them to C order).
  CUDA tensors go to fastloss' CUDA backend on PyTorch's current stream.
- Only float32 and float64 inputs; integer class labels int32 or int64.
- The backward pass treats the saved gradient as a constant, so it is
  differentiable once (double backward raises).
- ``torch.compile`` works: under compilation the kernel is called through a
  ``torch.library`` custom op (``fastloss::value_and_grad``) with a shape-only
  fake implementation, so the loss is one opaque node of the graph instead
  of a graph break; eagerly the kernel is called directly.
"""

from __future__ import annotations

import ast
import inspect

import numpy as np

try:
    import torch  # the real PyTorch (absolute import; this module is fastloss.torch)
except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
    if e.name != "torch":
        raise
    raise ModuleNotFoundError(
        "fastloss.torch needs PyTorch: pip install 'fastloss[torch]' (or torch>=2.1)",
        name=e.name) from e

from torch.autograd.function import once_differentiable  # noqa: E402

from fastloss import api, catalog  # noqa: E402

__all__ = ["FUNCTIONS", "MODULES", "TORCH_EQUIVALENTS", "Loss", "loss"]

_FLOATS = (torch.float32, torch.float64)


# --------------------------------------------------------------------------
# tensors <-> arrays


def _cpu_view(name: str, t):
    """A NumPy view of a CPU tensor's memory (no copy), or ``t`` unchanged if
    it is not a tensor."""
    if not isinstance(t, torch.Tensor):
        return t
    if t.device.type != "cpu":
        raise ValueError(f"{name}: is on {t.device} but input is on the CPU; "
                         "move both to one device")
    return t.detach().resolve_conj().resolve_neg().numpy()


def _no_grad_error(name: str, loss_name: str) -> ValueError:
    return ValueError(
        f"{name}: requires_grad=True, but fastloss.torch gives the gradient of "
        f"{loss_name} with respect to the input only; pass {name}.detach() "
        f"(or use the torch.nn loss if you need d(loss)/d({name}))"
    )


def _refuse_grad(name: str, t, loss_name: str) -> None:
    if isinstance(t, torch.Tensor) and t.requires_grad and torch.is_grad_enabled():
        raise _no_grad_error(name, loss_name)


def _check_input(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input: must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"input: dtype must be torch.float32 or torch.float64; got {x.dtype}")


def _value_tensor(value, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, float | int):
        return torch.tensor(value, dtype=like.dtype, device=like.device)
    return torch.as_tensor(value, device=like.device)  # a device array (CUDA backend)


def _run_cpu(name, input, target, reduction, params):
    x = _cpu_view("input", input)
    y = _cpu_view("target", target)
    p = {k: _cpu_view(k, v) for k, v in params.items()}
    grad = torch.empty(input.shape, dtype=input.dtype)  # C-contiguous, receives the gradient
    value, _ = api.value_and_grad(name, x, y, reduction=reduction, out=grad.numpy(), **p)
    return _value_tensor(value, input), grad


def _run_cuda(name, input, target, reduction, params):
    try:
        from fastloss.cuda.api import evaluate as cuda_evaluate
    except ImportError:
        raise NotImplementedError(
            f"input: a CUDA tensor needs fastloss' CUDA backend (fastloss.cuda.api), which this "
            f"build does not have; move the tensors to the CPU (input.cpu()) for {name}"
        ) from None
    from numba import cuda

    for k, v in (("target", target), *params.items()):
        if isinstance(v, torch.Tensor) and v.device != input.device:
            raise ValueError(f"{k}: is on {v.device} but input is on {input.device}")
    kwargs = {}
    if "stream" in inspect.signature(cuda_evaluate).parameters:
        stream = torch.cuda.current_stream(input.device)
        kwargs["stream"] = cuda.external_stream(stream.cuda_stream)
    with torch.cuda.device(input.device):
        value, grad = cuda_evaluate(
            catalog.get(name), input.detach(), target.detach() if isinstance(target, torch.Tensor)
            else target, reduction, {k: v.detach() if isinstance(v, torch.Tensor) else v
                                     for k, v in params.items()}, True, **kwargs)
    return _value_tensor(value, input), torch.as_tensor(grad, device=input.device)


def _value_and_grad(name, input, target, reduction, params):
    """(value tensor, gradient tensor) from one fused kernel call."""
    if input.device.type == "cuda":
        return _run_cuda(name, input, target, reduction, params)
    if input.device.type != "cpu":
        raise ValueError(f"input: fastloss runs on the CPU and CUDA; got a tensor on {input.device}")
    return _run_cpu(name, input, target, reduction, params)


# --------------------------------------------------------------------------
# torch.compile: the kernel as an opaque custom op


def _value_shape(spec, input: torch.Tensor, reduction: str) -> tuple[int, ...]:
    if reduction != "none":
        return ()
    if spec.family in api.ELEMENTWISE_FAMILIES:
        return tuple(input.shape)
    return tuple(input.shape[:1])  # one value per row / box pair


def _decode(encoded: str) -> dict:
    """The inverse of the ``k=repr(v);...`` encoding of scalar parameters."""
    out = {}
    for item in filter(None, encoded.split(";")):
        k, v = item.split("=", 1)
        out[k] = ast.literal_eval(v)
    return out


@torch.library.custom_op("fastloss::value_and_grad", mutates_args=())
def _op(name: str, input: torch.Tensor, target: torch.Tensor, reduction: str, params: str,
        tensor_params: str, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    params = _decode(params)
    params.update(zip(tensor_params.split(",") if tensor_params else [], tensors, strict=True))
    value, grad = _value_and_grad(name, input, target, reduction, params)
    return value, grad


@_op.register_fake
def _op_fake(name, input, target, reduction, params, tensor_params, tensors):
    spec = catalog.get(name)
    return (input.new_empty(_value_shape(spec, input, reduction)),
            torch.empty(input.shape, dtype=input.dtype, device=input.device))


def _compiled_value_and_grad(name, input, target, reduction, params):
    tensor_params = [k for k, v in params.items() if isinstance(v, torch.Tensor)]
    rest = {k: v for k, v in params.items() if k not in tensor_params}
    for k, v in rest.items():
        if v is not None and not isinstance(v, bool | int | float | str):
            raise TypeError(f"{k}: under torch.compile, array parameters must be tensors; "
                            f"got {type(v).__name__}")
    encoded = ";".join(f"{k}={v!r}" for k, v in rest.items())  # traceable by dynamo
    return _op(name, input, target, reduction, encoded, ",".join(tensor_params),
               [params[k] for k in tensor_params])


# --------------------------------------------------------------------------
# autograd


class FastlossFunction(torch.autograd.Function):
    """Base of the per-loss autograd Functions: ``apply(input, target,
    reduction, params)`` with ``params`` a dict of the loss' keyword
    parameters (floats, bools, ints, tensors)."""

    loss_name: str = ""

    @classmethod
    def apply(cls, input, target, reduction="mean", params=None):
        _refuse_grad("target", target, cls.loss_name)  # before forward: grad mode is off there
        return super().apply(input, target, reduction, {} if params is None else params)

    @staticmethod
    def forward(ctx, input, target, reduction, params):
        raise NotImplementedError  # replaced per loss below

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value):
        (grad,) = ctx.saved_tensors
        if grad_value.ndim:  # reduction "none": one incoming gradient per value
            grad_value = grad_value.reshape(grad_value.shape + (1,) * (grad.ndim - grad_value.ndim))
        return grad * grad_value, None, None, None


def _make_function(spec) -> type[FastlossFunction]:
    name = spec.name

    def forward(ctx, input, target, reduction, params):
        if torch.compiler.is_compiling():
            value, grad = _compiled_value_and_grad(name, input, target, reduction, params)
        else:
            value, grad = _value_and_grad(name, input, target, reduction, params)
        ctx.save_for_backward(grad)
        return value

    doc = (f"Autograd Function of fastloss.{name}: {spec.summary}.\n\n"
           f"apply(input, target, reduction, params: dict); see fastloss.{name}.")
    return type(_camel(name) + "Function", (FastlossFunction,), {
        "forward": staticmethod(forward), "loss_name": name, "__doc__": doc,
        "__module__": __name__,
    })


def _camel(name: str) -> str:
    upper = {"mse", "mae", "rmse", "msle", "nll", "kl", "iou", "giou", "diou", "ciou"}
    return "".join(w.upper() if w in upper else w.capitalize() for w in name.split("_"))


def loss(name: str, input, target, *, reduction: str = "mean", **params) -> torch.Tensor:
    """Loss ``name`` of tensors (see ``fastloss.value_and_grad`` for the
    parameters); differentiable with respect to ``input``."""
    spec = catalog.get(name)
    if not spec.has_grad:
        raise ValueError(f"name: {name} is a metric and has no gradient; use fastloss.{name}")
    _check_input(input)
    for k, v in params.items():
        _refuse_grad(k, v, name)
    if not torch.compiler.is_compiling() and not isinstance(target, torch.Tensor):
        raise TypeError(f"target: must be a torch.Tensor; got {type(target).__name__}")
    return FUNCTIONS[name].apply(input, target, reduction, params)


def _loss_function(spec):
    def f(input, target, *, reduction="mean", **params):
        return loss(spec.name, input, target, reduction=reduction, **params)

    f.__name__ = f.__qualname__ = spec.name
    f.__module__ = __name__
    sig = "".join(f", {p.name}={p.default!r}" for p in spec.params)
    f.__doc__ = (f"{spec.summary} (fastloss.{spec.name} on tensors).\n\n"
                 f"{spec.name}(input, target, *, reduction={spec.reductions[0]!r}{sig})")
    return f


# --------------------------------------------------------------------------
# nn.Module classes


class Loss(torch.nn.Module):
    """A fastloss loss as a module: ``Loss("huber", delta=0.5)(input, target)``.

    Tensor parameters (``weight``, ``pos_weight``, ``alpha``) are registered
    as buffers, so ``.to(device)`` moves them with the module."""

    def __init__(self, name: str, reduction: str = "mean", **params):
        super().__init__()
        spec = catalog.get(name)
        if not spec.has_grad:
            raise ValueError(f"name: {name} is a metric and has no gradient; use fastloss.{name}")
        self.name = name
        self.reduction = reduction
        self._param_names = []
        for k, v in params.items():
            if isinstance(v, torch.Tensor):
                self.register_buffer(k, v)
            else:
                setattr(self, k, v)
            self._param_names.append(k)

    @property
    def params(self) -> dict:
        return {k: getattr(self, k) for k in self._param_names}

    def forward(self, input, target):
        return loss(self.name, input, target, reduction=self.reduction, **self.params)

    def extra_repr(self) -> str:
        args = [f"reduction={self.reduction!r}"]
        for k, v in self.params.items():
            args.append(f"{k}=tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{k}={v!r}")
        return ", ".join(args)


_DEPRECATED = ("size_average", "reduce")

#: torch.nn class -> (fastloss loss, torch's constructor arguments in order,
#: with defaults). Arguments named like a fastloss parameter pass through;
#: the rest must keep their defaults (``_TORCH_ONLY``).
TORCH_EQUIVALENTS: dict[str, tuple[str, tuple[tuple[str, object], ...]]] = {
    "MSELoss": ("mse", (("size_average", None), ("reduce", None), ("reduction", "mean"))),
    "L1Loss": ("mae", (("size_average", None), ("reduce", None), ("reduction", "mean"))),
    "HuberLoss": ("huber", (("reduction", "mean"), ("delta", 1.0))),
    "SmoothL1Loss": ("smooth_l1", (("size_average", None), ("reduce", None),
                                   ("reduction", "mean"), ("beta", 1.0))),
    "BCELoss": ("binary_cross_entropy", (("weight", None), ("size_average", None),
                                         ("reduce", None), ("reduction", "mean"))),
    "BCEWithLogitsLoss": ("binary_cross_entropy_with_logits", (
        ("weight", None), ("size_average", None), ("reduce", None), ("reduction", "mean"),
        ("pos_weight", None))),
    "SoftMarginLoss": ("soft_margin", (("size_average", None), ("reduce", None),
                                       ("reduction", "mean"))),
    "PoissonNLLLoss": ("poisson_nll", (("log_input", True), ("full", False),
                                       ("size_average", None), ("eps", 1e-8), ("reduce", None),
                                       ("reduction", "mean"))),
    "CrossEntropyLoss": ("cross_entropy", (("weight", None), ("size_average", None),
                                           ("ignore_index", -100), ("reduce", None),
                                           ("reduction", "mean"), ("label_smoothing", 0.0))),
    "NLLLoss": ("nll", (("weight", None), ("size_average", None), ("ignore_index", -100),
                        ("reduce", None), ("reduction", "mean"))),
    "KLDivLoss": ("kl_div", (("size_average", None), ("reduce", None), ("reduction", "mean"),
                             ("log_target", False))),
    "MultiMarginLoss": ("multi_margin", (("p", 1), ("margin", 1.0), ("weight", None),
                                         ("size_average", None), ("reduce", None),
                                         ("reduction", "mean"))),
}

#: torch-only arguments fastloss does not have, with why only the default is allowed
_TORCH_ONLY = {
    "size_average": "is deprecated in PyTorch; use reduction=",
    "reduce": "is deprecated in PyTorch; use reduction=",
    "full": "(the Stirling term) is not part of fastloss' poisson_nll",
    "eps": "is not used: fastloss computes x - y log x exactly (no eps inside the log); "
           "only the default is accepted",
}


def _refuse_torch_only(cls: str, name: str, value, default) -> None:
    if value is default or value == default:
        return
    raise ValueError(f"{name}: {cls} of fastloss.torch takes only {name}={default!r}; {name} "
                     f"{_TORCH_ONLY[name]}; got {value!r}")


def _make_torch_module(cls_name: str, loss_name: str, args) -> type[Loss]:
    spec = catalog.BY_NAME[loss_name]
    sig = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d) for a, d in args])

    def __init__(self, *a, **kw):
        bound = sig.bind(self, *a, **kw)
        bound.apply_defaults()
        given = dict(bound.arguments)
        given.pop("self")
        reduction = given.pop("reduction")
        params = {}
        for k, v in given.items():
            if k in spec.param_names:
                if v is not None or k not in ("weight", "pos_weight"):
                    params[k] = v
            elif k == "weight" and v is not None:
                raise ValueError(f"weight: {cls_name} of fastloss.torch has no class/element "
                                 f"weight (fastloss.{loss_name} takes none); got a weight")
            elif k != "weight":
                _refuse_torch_only(cls_name, k, v, dict(args)[k])
        Loss.__init__(self, loss_name, reduction, **params)

    __init__.__signature__ = sig
    doc = (f"Drop-in for torch.nn.{cls_name}: fastloss.{loss_name} ({spec.summary}), "
           f"value and gradient in one fused kernel pass.\n\n"
           f"{cls_name}({', '.join(f'{a}={d!r}' for a, d in args)})")
    if loss_name == "kl_div":
        doc += ("\n\nInput and target are (N, C); reduction='none' gives one value per row "
                "(torch.nn.KLDivLoss gives one per element).")
    return type(cls_name, (Loss,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


def _make_own_module(spec) -> type[Loss]:
    params = "".join(f", {p.name}={p.default!r}" for p in spec.params)

    def __init__(self, reduction="mean", **params):
        Loss.__init__(self, spec.name, reduction, **params)

    name = _camel(spec.name.removesuffix("_loss")) + "Loss"
    doc = (f"fastloss.{spec.name} as a module: {spec.summary}.\n\n"
           f"{name}(reduction={spec.reductions[0]!r}{params})")
    return type(name, (Loss,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


_TORCH_FOR = {v[0]: k for k, v in TORCH_EQUIVALENTS.items()}

FUNCTIONS: dict[str, type[FastlossFunction]] = {}
MODULES: dict[str, type[Loss]] = {}
for _spec in catalog.SPECS:
    if not _spec.has_grad:
        continue
    FUNCTIONS[_spec.name] = _make_function(_spec)
    globals()[FUNCTIONS[_spec.name].__name__] = FUNCTIONS[_spec.name]
    globals()[_spec.name] = _loss_function(_spec)
    if _spec.name in _TORCH_FOR:
        _cls = _TORCH_FOR[_spec.name]
        MODULES[_cls] = _make_torch_module(_cls, _spec.name, TORCH_EQUIVALENTS[_cls][1])
    else:
        _m = _make_own_module(_spec)
        MODULES[_m.__name__] = _m
    __all__ += [_spec.name, FUNCTIONS[_spec.name].__name__]
globals().update(MODULES)
__all__ += sorted(MODULES)
del _spec
