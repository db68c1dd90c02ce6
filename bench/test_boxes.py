"""Box losses (iou, giou, diou, ciou) on N = 2^20 box pairs: fastloss
``value_and_grad`` beside the same losses written with PyTorch tensor
operations, forward + backward through autograd, in the same run.

    python -m pytest bench/test_boxes.py --benchmark-json=boxes.json
    python -m pytest bench/test_boxes.py --benchmark-disable -q   # smoke

The PyTorch versions follow torchvision.ops (``_loss_inter_union``,
``generalized_box_iou_loss``, ``distance_box_iou_loss``,
``complete_box_iou_loss``: eps = 1e-7, CIoU's alpha under no_grad), written
here so that no torchvision wheel is needed. ``test_ratio`` (last) prints
torch time / fastloss time per loss, dtype and thread count and stores it in
the JSON (``extra_info["speedup_vs_torch"]``).
"""

import math

import numba
import numpy as np
import pytest

import fastloss as fl

N = 1 << 20
_TIMES: dict[tuple, float] = {}


def pytest_generate_tests(metafunc):
    """Losses, dtypes and thread counts from the ``--fl-*`` selection: by
    default iou_loss and ciou_loss in float32 at 1, 2, 4, ... cores threads
    (``fastloss.benchmark.cases.box_selection``); every box loss and both
    dtypes with ``--fl-full``, ``--fl-loss`` or ``--fl-smoke``."""
    if "name" not in metafunc.fixturenames:
        return
    from fastloss.benchmark.cases import box_selection, options_from_config

    names, dtypes, threads = box_selection(options_from_config(metafunc.config))
    threads = tuple(t for t in threads if t <= numba.config.NUMBA_NUM_THREADS)
    metafunc.parametrize("nt", threads)
    metafunc.parametrize("dtype", dtypes)
    metafunc.parametrize("name", names)

def _boxes(dtype, seed):
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 100, (N, 2))
    wh = rng.uniform(1, 20, (N, 2))
    return np.ascontiguousarray(np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(dtype))


_DATA = {}


@pytest.fixture
def n_pairs(request):
    """N = 2^20 box pairs, or 2^10 under ``--fl-smoke`` (the CI smoke run)."""
    return 1 << 10 if request.config.getoption("--fl-smoke") else N


def _data(dtype, n=N):
    if (dtype, n) not in _DATA:
        p = _boxes(dtype, 0)[:n]
        t = p + np.random.default_rng(1).uniform(-3, 3, (n, 4)).astype(dtype)
        t[:, 2:] = np.maximum(t[:, 2:], t[:, :2] + 0.5)  # no zero-size targets (torch: 0/0)
        _DATA[dtype, n] = (np.ascontiguousarray(p), np.ascontiguousarray(t))
    return _DATA[dtype, n]


# --- the same losses with PyTorch tensor operations (torchvision's formulas) ---

def _torch_inter_union(p, t):
    import torch

    x1, y1, x2, y2 = p.unbind(dim=-1)
    x1g, y1g, x2g, y2g = t.unbind(dim=-1)
    xkis1 = torch.max(x1, x1g)
    ykis1 = torch.max(y1, y1g)
    xkis2 = torch.min(x2, x2g)
    ykis2 = torch.min(y2, y2g)
    inter = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    inter[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def torch_loss(name, p, t, eps=1e-7):
    """Sum over box pairs of the box loss ``name``, as torchvision computes it."""
    import torch

    inter, union = _torch_inter_union(p, t)
    iou = inter / (union + eps)
    if name == "iou_loss":
        return (1 - iou).sum()
    x1, y1, x2, y2 = p.unbind(dim=-1)
    x1g, y1g, x2g, y2g = t.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    if name == "giou_loss":
        area_c = (xc2 - xc1) * (yc2 - yc1)
        return (1 - (iou - ((area_c - union) / (area_c + eps)))).sum()
    diag = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    xp = (x2 + x1) / 2
    yp = (y2 + y1) / 2
    xg = (x1g + x2g) / 2
    yg = (y1g + y2g) / 2
    dist = ((xp - xg) ** 2) + ((yp - yg) ** 2)
    diou = 1 - iou + dist / diag
    if name == "diou_loss":
        return diou.sum()
    w_pred = x2 - x1
    h_pred = y2 - y1
    w_gt = x2g - x1g
    h_gt = y2g - y1g
    v = (4 / (math.pi**2)) * torch.pow((torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return (diou + alpha * v).sum()


def _set_threads(nt):
    numba.set_num_threads(nt)
    try:
        import torch

        torch.set_num_threads(nt)
    except ImportError:
        pass


def test_fastloss(benchmark, name, dtype, nt, n_pairs):
    p, t = _data(dtype, n_pairs)
    _set_threads(nt)
    fl.value_and_grad(name, p, t, reduction="sum")  # compile / warm up
    benchmark.group = f"boxes/{name}/{dtype}/threads={nt}"
    benchmark.extra_info.update(loss=name, dtype=dtype, threads=nt, n=n_pairs, impl="fastloss")
    v, g = benchmark.pedantic(fl.value_and_grad, args=(name, p, t), kwargs={"reduction": "sum"},
                              rounds=5, iterations=1, warmup_rounds=1)
    assert math.isfinite(v) and g.shape == p.shape
    if benchmark.stats is not None:
        _TIMES[("fastloss", name, dtype, nt)] = benchmark.stats.stats.min


def test_torch(benchmark, name, dtype, nt, n_pairs):
    torch = pytest.importorskip("torch")
    p, t = _data(dtype, n_pairs)
    _set_threads(nt)
    tt = torch.from_numpy(t)

    def fwd_bwd():
        pt = torch.from_numpy(p).requires_grad_(True)
        loss = torch_loss(name, pt, tt)
        loss.backward()
        return loss.item(), pt.grad

    fwd_bwd()
    benchmark.group = f"boxes/{name}/{dtype}/threads={nt}"
    benchmark.extra_info.update(loss=name, dtype=dtype, threads=nt, n=n_pairs, impl="torch")
    v, g = benchmark.pedantic(fwd_bwd, rounds=3, iterations=1, warmup_rounds=0)
    # same loss as fastloss (torchvision's eps = 1e-7 shifts it slightly)
    ref = fl.value_and_grad(name, p, t, reduction="sum")[0]
    assert v == pytest.approx(ref, rel=1e-3)
    if benchmark.stats is not None:
        _TIMES[("torch", name, dtype, nt)] = benchmark.stats.stats.min


def test_ratio(benchmark, capsys):
    """torch time / fastloss time (same run); > 1 means fastloss is faster."""
    rows = []
    for (impl, name, dtype, nt), tf in sorted(_TIMES.items()):
        if impl != "fastloss" or ("torch", name, dtype, nt) not in _TIMES:
            continue
        tt = _TIMES[("torch", name, dtype, nt)]
        rows.append((name, dtype, nt, tf, tt, tt / tf))
    benchmark.extra_info["speedup_vs_torch"] = [
        dict(loss=r[0], dtype=r[1], threads=r[2], fastloss_s=r[3], torch_s=r[4], ratio=r[5])
        for r in rows
    ]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    with capsys.disabled():
        print("\nbox losses, N = 2^20, forward + backward: torch / fastloss")
        for name, dtype, nt, tf, tt, r in rows:
            print(f"  {name:10s} {dtype:8s} threads={nt}  fastloss {tf * 1e3:8.2f} ms  "
                  f"torch {tt * 1e3:8.2f} ms  ratio {r:6.2f}x")
