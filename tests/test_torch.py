"""fastloss.torch: autograd Functions and nn.Module losses.

Gradients are checked by torch.autograd.gradcheck (finite differences in
float64) for every loss and reduction; values and gradients against the
torch.nn loss of the same name on ordinary inputs; accuracy at extreme inputs
against mpmath (fastloss within a few ULP where torch is not)."""


import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mpmath  # noqa: E402

import fastloss as fl  # noqa: E402
import fastloss.torch as flt  # noqa: E402
from fastloss import catalog  # noqa: E402

GRAD_SPECS = [s for s in catalog.SPECS if s.has_grad]
LABELS = {"cross_entropy", "nll", "softmax_focal", "multi_margin"}
#: the gradient is not the exact derivative by definition (LOSSES.md: CIoU's
#: alpha is held constant in the gradient, as in the CIoU paper)
NOT_EXACT_GRAD = {"ciou_loss"}


def sample(name, dtype=torch.float64, n=5, c=3, seed=0):
    """Valid (input, target) tensors for a loss, drawn from its domain, away
    from kinks."""
    g = torch.Generator().manual_seed(seed)

    def randn(*s):
        return torch.randn(*s, generator=g, dtype=dtype)

    def rand(*s):
        return torch.rand(*s, generator=g, dtype=dtype)

    family = catalog.get(name).family
    if family == "box":
        xy, wh = rand(n, 2) * 4, rand(n, 2) * 3 + 0.5
        txy, twh = xy + rand(n, 2) - 0.5, wh * (0.5 + rand(n, 2))
        return torch.cat([xy, xy + wh], 1), torch.cat([txy, txy + twh], 1)
    if family == "multiclass":
        x = randn(n, c) * 2
        labels = torch.randint(0, c, (n,), generator=g)
        if name in LABELS:
            return (torch.log_softmax(x, 1) if name == "nll" else x), labels
        t = torch.softmax(randn(n, c), 1)
        if name == "categorical_cross_entropy":
            return torch.softmax(x, 1), t
        return torch.log_softmax(x, 1), t  # kl_div
    x, y = randn(n, c) * 2, randn(n, c) * 2
    if name == "binary_cross_entropy":
        x = rand(n, c) * 0.98 + 0.01
    if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits", "sigmoid_focal"):
        y = rand(n, c)
        y[:, ::2] = torch.round(y[:, ::2])
    if name in ("hinge", "squared_hinge", "soft_margin"):
        y = torch.where(rand(n, c) < 0.5, -1.0, 1.0).to(dtype)
    if name in ("msle", "poisson_nll"):
        y = y.abs()
        if name == "msle":
            x = x.abs()
    return x, y


def _reductions(spec):
    return list(spec.reductions)


@pytest.mark.parametrize("spec", GRAD_SPECS, ids=lambda s: s.name)
def test_gradcheck_every_loss_and_reduction(spec):
    if spec.name in NOT_EXACT_GRAD:
        pytest.skip(f"{spec.name}: its gradient is defined with a term held constant")
    x, y = sample(spec.name)
    x.requires_grad_(True)
    for reduction in _reductions(spec):
        f = lambda a: flt.loss(spec.name, a, y, reduction=reduction)  # noqa: B023
        assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-5), reduction


def test_gradcheck_with_parameters():
    x, y = sample("cross_entropy", n=6, c=4)
    y[2] = -100
    w = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    x.requires_grad_(True)
    for red in ("mean", "sum", "none"):
        f = lambda a: flt.cross_entropy(a, y, reduction=red, weight=w, label_smoothing=0.2)  # noqa: B023
        assert torch.autograd.gradcheck(f, (x,))
    xb, yb = sample("binary_cross_entropy_with_logits")
    xb.requires_grad_(True)
    pw = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a: flt.BCEWithLogitsLoss(pos_weight=pw, reduction="none")(a, yb), (xb,))
    xh, yh = sample("huber")
    xh.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: flt.HuberLoss(delta=0.3)(a, yh), (xh,))


@pytest.mark.parametrize("spec", GRAD_SPECS, ids=lambda s: s.name)
def test_forward_and_backward_match_the_numpy_api(spec):
    """The module is the NumPy API: same value, same gradient, bit for bit;
    backward of reduction="none" with an incoming gradient g is g times the
    gradient of each value (per element or per row)."""
    if "sum" not in spec.reductions:  # rmse: "mean" only
        pytest.skip(f"{spec.name} takes only {spec.reductions}")
    for dtype in (torch.float32, torch.float64):
        x, y = sample(spec.name, dtype)
        v_np, g_np = fl.value_and_grad(spec.name, x.numpy(), y.numpy(), reduction="sum")
        xr = x.clone().requires_grad_(True)
        v = flt.loss(spec.name, xr, y, reduction="sum")
        v.backward()
        assert v.dtype == dtype and v.ndim == 0
        assert v.item() == np.float64(np.asarray(v_np, dtype=x.numpy().dtype))
        np.testing.assert_array_equal(xr.grad.numpy(), g_np)
        # "none" with an incoming gradient
        xr.grad = None
        vn = flt.loss(spec.name, xr, y, reduction="none")
        gout = torch.linspace(-1, 2, vn.numel(), dtype=dtype).reshape(vn.shape)
        vn.backward(gout)
        gn = gout.numpy().reshape(gout.shape + (1,) * (x.ndim - gout.ndim))
        # per-value gradient: row i of the sum's gradient belongs to value i
        np.testing.assert_allclose(xr.grad.numpy(), g_np * gn, rtol=1e-6 if dtype == torch.float32 else 1e-14)


# --- equality with torch.nn -------------------------------------------------

T = torch.nn
EQUIVALENT_CASES = [
    ("MSELoss", "mse", {}),
    ("L1Loss", "mae", {}),
    ("HuberLoss", "huber", {}),
    ("HuberLoss", "huber", {"delta": 0.5}),
    ("SmoothL1Loss", "smooth_l1", {"beta": 0.7}),
    ("SmoothL1Loss", "smooth_l1", {"beta": 0.0}),
    ("BCELoss", "binary_cross_entropy", {}),
    ("BCEWithLogitsLoss", "binary_cross_entropy_with_logits", {}),
    ("BCEWithLogitsLoss", "binary_cross_entropy_with_logits",
     {"pos_weight": torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64),
      "weight": torch.tensor([1.0, 0.2, 4.0], dtype=torch.float64)}),
    ("SoftMarginLoss", "soft_margin", {}),
    ("PoissonNLLLoss", "poisson_nll", {}),
    ("CrossEntropyLoss", "cross_entropy", {}),
    ("CrossEntropyLoss", "cross_entropy",
     {"weight": torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64), "ignore_index": 1,
      "label_smoothing": 0.1}),
    ("NLLLoss", "nll", {"weight": torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)}),
    ("KLDivLoss", "kl_div", {}),
    ("KLDivLoss", "kl_div", {"log_target": True}),
    ("MultiMarginLoss", "multi_margin", {}),
    ("MultiMarginLoss", "multi_margin",
     {"p": 2, "margin": 0.7, "weight": torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)}),
]


def _cast(kw, dtype):
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}


@pytest.mark.parametrize("cls,name,kw", EQUIVALENT_CASES,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(EQUIVALENT_CASES)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_matches_torch_nn(cls, name, kw, dtype):
    if name not in fl.names():
        pytest.skip(f"{name} not in this build")
    x, y = sample(name, dtype, n=7, c=3, seed=3)
    if name == "kl_div" and kw.get("log_target"):
        y = torch.log(y)
    kw = _cast(kw, dtype)
    rtol = 2e-6 if dtype == torch.float32 else 1e-12
    for reduction in ("mean", "sum", "none") + (("batchmean",) if name == "kl_div" else ()):
        ours = getattr(flt, cls)(reduction=reduction, **kw)
        theirs = getattr(T, cls)(reduction=reduction, **kw)
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        va, vb = ours(xa, y), theirs(xb, y)
        if name == "kl_div" and reduction == "none":
            vb = vb.sum(1)  # torch: one value per element; fastloss: one per row
        assert va.shape == vb.shape and va.dtype == vb.dtype
        torch.testing.assert_close(va, vb, rtol=rtol, atol=1e-7 if dtype == torch.float32 else 1e-14)
        gout = torch.linspace(0.5, 2, max(va.numel(), 1), dtype=dtype).reshape(va.shape)
        va.backward(gout)
        vb.backward(gout)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=rtol,
                                   atol=1e-7 if dtype == torch.float32 else 1e-14)


def test_poisson_nll_without_log_input_matches_torch_up_to_its_eps():
    x, y = sample("poisson_nll", seed=4)
    x = x.abs() + 0.5
    a = flt.PoissonNLLLoss(log_input=False)(x, y)
    b = T.PoissonNLLLoss(log_input=False)(x, y)  # log(x + 1e-8)
    torch.testing.assert_close(a, b, rtol=1e-7, atol=0)


def test_torch_only_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="full: PoissonNLLLoss .* full=False"):
        flt.PoissonNLLLoss(full=True)
    with pytest.raises(ValueError, match="eps: .*exactly"):
        flt.PoissonNLLLoss(eps=1e-6)
    with pytest.raises(ValueError, match="size_average: .*deprecated"):
        flt.MSELoss(True)
    with pytest.raises(ValueError, match="weight: BCELoss"):
        flt.BCELoss(weight=torch.ones(3))
    with pytest.raises(TypeError):
        flt.HuberLoss(hubris=1.0)
    # positional arguments in torch's order
    assert flt.CrossEntropyLoss(None, None, 3).ignore_index == 3
    assert flt.MultiMarginLoss(2, 0.5).params == {"p": 2, "margin": 0.5}


def test_bad_input_is_refused_with_fastloss_messages():
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match="input: dtype"):
        flt.MSELoss()(x.half(), x.half())
    with pytest.raises(TypeError, match="target: dtype"):
        flt.MSELoss()(x, x.double())
    with pytest.raises(ValueError, match="target: label 7"):
        flt.CrossEntropyLoss()(x, torch.tensor([0, 1, 7, 2]))
    with pytest.raises(ValueError, match="reduction"):
        flt.MSELoss(reduction="avg")(x, x)


# --- accuracy at extreme inputs, against mpmath --------------------------------

mpmath.mp.dps = 60


def _ulps(got, exact, dtype):
    """|got - exact| in units of the last place of ``dtype`` at ``exact``."""
    exact = float(exact)
    if got == exact:
        return 0.0
    ulp = float(np.spacing(np.asarray(max(abs(exact), np.finfo(dtype).tiny), dtype=dtype)))
    return abs(got - exact) / ulp


def _both(cls, x, y, **kw):
    out = []
    for impl in (getattr(flt, cls), getattr(T, cls)):
        xr = x.clone().requires_grad_(True)
        v = impl(reduction="sum", **kw)(xr, y)
        v.backward()
        out.append((v.item(), xr.grad.reshape(-1).tolist()))
    return out


def _softplus(z):
    return mpmath.log1p(mpmath.exp(z))


@pytest.mark.parametrize("case", ["bce_probability_1e-60", "bce_logits_+40", "ce_logit_gap_40"])
def test_more_accurate_than_torch_at_extreme_inputs(case):
    f64 = np.float64
    if case == "bce_probability_1e-60":
        # torch clamps log at -100 (pytorch#103316): value 100 instead of 138.2
        p = mpmath.mpf("1e-60")
        x, y = torch.tensor([1e-60], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
        cls, kw, exact_v, exact_g = "BCELoss", {}, -mpmath.log(f64(1e-60)), [-1 / mpmath.mpf(f64(1e-60))]
        del p
    elif case == "bce_logits_+40":
        # softplus(-40) = 4.2e-18 vanishes in torch's log(1 + e^-40)
        x, y = torch.tensor([40.0, -40.0]), torch.tensor([1.0, 0.0])
        z = mpmath.mpf(40)
        exact_v = 2 * _softplus(-z)
        exact_g = [-1 / (1 + mpmath.exp(z)), 1 / (1 + mpmath.exp(z))]
        cls, kw = "BCEWithLogitsLoss", {}
    else:
        if "cross_entropy" not in fl.names():
            pytest.skip("cross_entropy not in this build")
        # log_softmax of the larger logit: -log1p(e^-40) rounds to 0 in torch
        x, y = torch.tensor([[0.0, -40.0]], dtype=torch.float64), torch.tensor([0])
        e = mpmath.exp(-40)
        exact_v = mpmath.log1p(e)
        exact_g = [-e / (1 + e), e / (1 + e)]
        cls, kw = "CrossEntropyLoss", {}
    dtype = x.numpy().dtype
    (va, ga), (vb, gb) = _both(cls, x, y, **kw)
    err_ours = max([_ulps(va, exact_v, dtype)]
                   + [_ulps(a, b, dtype) for a, b in zip(ga, exact_g, strict=True)])
    err_torch = max([_ulps(vb, exact_v, dtype)]
                    + [_ulps(a, b, dtype) for a, b in zip(gb, exact_g, strict=True)])
    assert err_ours <= 2, (va, ga, float(exact_v))
    assert err_torch > 1e3, "torch got this right; pick another case"


# --- refusals, layouts, compile ----------------------------------------------


def test_target_requiring_grad_is_refused_clearly():
    x, y = sample("mse")
    x.requires_grad_(True)
    y.requires_grad_(True)
    with pytest.raises(ValueError, match=r"target: requires_grad=True.*input only.*detach"):
        flt.MSELoss()(x, y)
    flt.MSELoss()(x, y.detach()).backward()  # the fix the message gives
    with torch.no_grad():  # no graph, nothing to refuse
        flt.MSELoss()(x, y)
    xb, yb = sample("binary_cross_entropy_with_logits")
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="pos_weight: requires_grad=True"):
        flt.BCEWithLogitsLoss(pos_weight=w)(xb, yb)


def test_double_backward_is_refused():
    x, y = sample("log_cosh")
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(flt.LogCoshLoss()(x, y), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        g.sum().backward()


@pytest.mark.parametrize("name", ["huber", "binary_cross_entropy_with_logits", "cross_entropy",
                                  "kl_div", "giou_loss"])
def test_non_contiguous_tensors(name):
    if name not in fl.names():
        pytest.skip(f"{name} not in this build")
    x, y = sample(name, n=6, c=4 if name != "giou_loss" else 3)
    if name == "giou_loss":
        # column-major boxes: a transposed (4, N) buffer
        xt, yt = x.t().contiguous().t(), y.t().contiguous().t()
    elif catalog.get(name).family == "multiclass":
        xt = x.t().contiguous().t()
        yt = y if y.dtype == torch.int64 else y.t().contiguous().t()
        if y.dtype == torch.int64:
            yt = torch.stack([y, y], 1)[:, 0]  # strided labels
    else:
        xt, yt = x.t().contiguous().t(), y.t().contiguous().t()
    assert not xt.is_contiguous()
    xa, xb = x.clone().requires_grad_(True), xt.clone().requires_grad_(False)
    xb = xt.detach().requires_grad_(True)
    assert not xb.is_contiguous()
    for reduction in ("mean", "none"):
        xa.grad = xb.grad = None
        va = flt.loss(name, xa, y, reduction=reduction)
        vb = flt.loss(name, xb, yt, reduction=reduction)
        torch.testing.assert_close(va, vb, rtol=0, atol=0)
        va.sum().backward()
        vb.sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=0)


def test_cpu_tensors_are_not_copied():
    """The kernel reads the tensor's own memory: an input whose elements are
    changed in place between two calls gives the second call's loss."""
    x = torch.zeros(1000, dtype=torch.float64)
    v = flt.mse(x, torch.zeros_like(x), reduction="sum")
    x[3] = 2.0
    assert v.item() == 0.0 and flt.mse(x, torch.zeros_like(x), reduction="sum").item() == 4.0
    # and the gradient buffer is a tensor's: its memory is the one NumPy wrote
    view = fl.value_and_grad  # noqa: F841 - the NumPy API the module calls
    g = torch.empty(3)
    assert g.numpy().__array_interface__["data"][0] == g.data_ptr()


def test_torch_compile_works_fullgraph():
    crit = flt.CrossEntropyLoss(label_smoothing=0.1) if "cross_entropy" in fl.names() \
        else flt.HuberLoss()
    bce = flt.BCEWithLogitsLoss(pos_weight=torch.full((5,), 2.0), reduction="none")

    def step(x, y, yb):
        return crit(2 * x, y if "cross_entropy" in fl.names() else yb) + bce(x, yb).mean()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    x = torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    yb = torch.rand(8, 5)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    va, vb = compiled(xa, y, yb), step(xb, y, yb)
    torch.testing.assert_close(va, vb, rtol=0, atol=0)
    va.backward()
    vb.backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=0)


def test_modules_are_generated_from_the_catalogue():
    torch_named = {cls: name for cls, (name, _) in flt.TORCH_EQUIVALENTS.items()}
    covered = {m.__name__: m for m in flt.MODULES.values()}
    for spec in GRAD_SPECS:
        assert spec.name in flt.FUNCTIONS
        assert issubclass(flt.FUNCTIONS[spec.name], torch.autograd.Function)
        assert callable(getattr(flt, spec.name))
    names_by_module = {}
    for cls_name, cls in covered.items():
        names_by_module[cls().name] = cls_name
    for spec in GRAD_SPECS:
        assert spec.name in names_by_module, spec.name
    for cls, name in torch_named.items():
        if name in fl.names():
            assert names_by_module[name] == cls
            assert hasattr(T, cls)
    assert "LogCoshLoss" in covered and "SigmoidFocalLoss" in covered


def test_module_buffers_follow_the_module():
    m = flt.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
    assert "weight" in dict(m.named_buffers())
    m = m.double()
    assert m.weight.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_match_cpu():
    x, y = sample("huber", torch.float32)
    xc = x.cuda().requires_grad_(True)
    v = flt.HuberLoss()(xc, y.cuda())
    v.backward()
    xr = x.clone().requires_grad_(True)
    flt.HuberLoss()(xr, y).backward()
    torch.testing.assert_close(xc.grad.cpu(), xr.grad, rtol=1e-6, atol=0)
