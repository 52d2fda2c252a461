"""The Taylor-mode derivative engine against plain autograd, and torch.func compatibility."""

import pytest
import torch
from torch.func import grad, vmap

from metapinn.nets import init_mlp, mlp, mlp_derivatives, parse_derivative

BOUNDS = ((-1.0, 1.0), (0.0, 2.0))
ALL = ("u_x", "u_t", "u_xx", "u_xt", "u_tt")


def _params(widths=(2, 12, 12, 12, 1), seed=0):
    return init_mlp(widths, torch.Generator().manual_seed(seed), torch.float64)


def _points(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 2.0]) \
        - torch.tensor([1.0, 0.0])


def _autograd_derivatives(params, X):
    X = X.clone().requires_grad_(True)
    u = mlp(params, X, BOUNDS)
    g1 = torch.autograd.grad(u.sum(), X, create_graph=True)[0]
    gx = torch.autograd.grad(g1[:, 0].sum(), X, create_graph=True)[0]
    gt = torch.autograd.grad(g1[:, 1].sum(), X, create_graph=True)[0]
    return {"u": u, "u_x": g1[:, 0], "u_t": g1[:, 1], "u_xx": gx[:, 0], "u_xt": gx[:, 1],
            "u_tt": gt[:, 1]}


@pytest.mark.parametrize("widths", [(2, 8, 1), (2, 12, 12, 12, 1), (2, 5, 7, 3, 1)])
def test_taylor_mode_equals_autograd_float64(widths):
    p, X = _params(widths), _points()
    ours = mlp_derivatives(p, X, BOUNDS, ("x", "t"), ALL)
    ref = _autograd_derivatives(p, X)
    for k, v in ref.items():
        assert torch.allclose(ours[k], v, rtol=0, atol=1e-10), k


def test_requested_subset_and_order_do_not_matter():
    p, X = _params(), _points()
    full = mlp_derivatives(p, X, BOUNDS, ("x", "t"), ALL)
    sub = mlp_derivatives(p, X, BOUNDS, ("x", "t"), ("u_tt", "u_x"))
    assert set(sub) == {"u", "u_tt", "u_x"}
    assert torch.equal(sub["u_tt"], full["u_tt"]) and torch.equal(sub["u_x"], full["u_x"])
    assert torch.equal(mlp_derivatives(p, X, BOUNDS, ("x", "t"), ("u_tx",))["u_tx"],
                       full["u_xt"])


def test_parse_derivative_errors():
    assert parse_derivative("u_yx", ("x", "y")) == (0, 1)
    with pytest.raises(ValueError, match="not an input"):
        parse_derivative("u_z", ("x", "y"))
    with pytest.raises(ValueError, match="above 2"):
        parse_derivative("u_xxx", ("x", "y"))


def _second_derivative_loss(params, X):
    d = mlp_derivatives(params, X, BOUNDS, ("x", "t"), ("u_xx", "u_t"))
    return ((d["u_t"] - 0.1 * d["u_xx"] + d["u"]) ** 2).mean()


def test_func_grad_equals_autograd():
    p, X = _params(), _points()
    g_func = grad(_second_derivative_loss)(p, X)
    leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    loss = _second_derivative_loss(leaves, X)
    g_auto = torch.autograd.grad(loss, list(leaves.values()))
    for (k, a), b in zip(g_func.items(), g_auto, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14), k


def test_vmap_over_parameter_dicts_equals_loop():
    ps = [_params(seed=s) for s in range(3)]
    stacked = {k: torch.stack([p[k] for p in ps]) for k in ps[0]}
    X = _points()
    batched = vmap(grad(_second_derivative_loss), in_dims=(0, None))(stacked, X)
    for i, p in enumerate(ps):
        single = grad(_second_derivative_loss)(p, X)
        for k in p:
            assert torch.allclose(batched[k][i], single[k], rtol=1e-12, atol=1e-14)


def test_second_order_gradient_matches_finite_differences():
    """Hessian-vector product of a PINN loss (what MAML needs) against central FD of grad."""
    p, X = _params(), _points()
    g = torch.Generator().manual_seed(3)
    v = {k: torch.randn(x.shape, generator=g, dtype=torch.float64) for k, x in p.items()}

    def directional(q):
        gq = grad(_second_derivative_loss)(q, X)
        return sum((gq[k] * v[k]).sum() for k in q)

    hvp = grad(directional)(p)
    eps = 1e-5
    plus = grad(_second_derivative_loss)({k: p[k] + eps * v[k] for k in p}, X)
    minus = grad(_second_derivative_loss)({k: p[k] - eps * v[k] for k in p}, X)
    for k in p:
        fd = (plus[k] - minus[k]) / (2 * eps)
        assert torch.allclose(hvp[k], fd, rtol=1e-5, atol=1e-8), k


def test_init_is_glorot_and_seeded():
    a = init_mlp((2, 400, 300, 1), torch.Generator().manual_seed(0))
    b = init_mlp((2, 400, 300, 1), torch.Generator().manual_seed(0))
    assert all(torch.equal(a[k], b[k]) for k in a)
    std = a["w1"].std().item()
    assert abs(std - (2 / 700) ** 0.5) < 0.02 * (2 / 700) ** 0.5
    assert torch.count_nonzero(a["b0"]) == 0
    with pytest.raises(ValueError, match="widths"):
        init_mlp((2,), torch.Generator())


def test_ansatz_product_rule_equals_autograd():
    """Darcy's hard-constraint u = g·N: derivatives by the product rule vs autograd."""
    from metapinn.loss import solution, solution_derivatives
    from metapinn.pdes import get_pde

    pde = get_pde("darcy")
    p = init_mlp((2, 10, 10, 1), torch.Generator().manual_seed(4), torch.float64)
    X = torch.rand(30, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours = solution_derivatives(p, X, pde)
    Xg = X.clone().requires_grad_(True)
    u = solution(p, Xg, pde)
    g1 = torch.autograd.grad(u.sum(), Xg, create_graph=True)[0]
    gx = torch.autograd.grad(g1[:, 0].sum(), Xg, create_graph=True)[0]
    gy = torch.autograd.grad(g1[:, 1].sum(), Xg, create_graph=True)[0]
    ref = {"u": u, "u_x": g1[:, 0], "u_y": g1[:, 1], "u_xx": gx[:, 0], "u_yy": gy[:, 1]}
    for k, v in ref.items():
        assert torch.allclose(ours[k], v, rtol=0, atol=1e-10), k
    edge = torch.tensor([[0.0, 0.3], [1.0, 0.7], [0.2, 0.0], [0.9, 1.0]], dtype=torch.float64)
    assert solution(p, edge, pde).abs().max() == 0  # u = 0 on ∂Ω exactly


@pytest.mark.parametrize("widths", [(2, 8, 1), (2, 12, 12, 12, 1)])
@pytest.mark.parametrize("operator", [
    {"u_t": 1.0, "u_xx": -0.3},                 # Burgers' u_t − ν u_xx
    {"u_t": 1.0, "u_x": 2.5, "u_xx": -0.7},     # CDR's u_t + β u_x − ν u_xx
    {"u_xx": 1.0, "u_tt": 1.0},                 # a Laplacian: second order only
    {"u_xt": 1.5, "u_x": -1.0},                 # a mixed second derivative
])
def test_operator_stream_equals_autograd(widths, operator):
    """L u = Σ c_k ∂_k u propagated as one stream equals the same sum of autograd's
    derivatives (float64), with the individually requested ones unchanged, and its
    gradient in a coefficient (a 0-d tensor, as an unknown ν is) is the autograd one."""
    p, X = _params(widths), _points()
    ref = _autograd_derivatives(p, X)
    coef = {k: torch.tensor(c, dtype=torch.float64, requires_grad=True)
            for k, c in operator.items()}
    ours = mlp_derivatives(p, X, BOUNDS, ("x", "t"), ("u_x",), coef)
    expected = sum(c * ref[k] for k, c in coef.items())
    assert set(ours) == {"u", "u_x", "Lu"}
    assert torch.allclose(ours["Lu"], expected, rtol=0, atol=1e-10)
    assert torch.allclose(ours["u_x"], ref["u_x"], rtol=0, atol=1e-10)
    k0 = next(iter(coef))
    g_ours = torch.autograd.grad(ours["Lu"].square().sum(), coef[k0])[0]
    g_ref = torch.autograd.grad(expected.square().sum(), coef[k0])[0]
    assert torch.allclose(g_ours, g_ref, rtol=1e-10)


def test_operator_stream_through_the_ansatz_equals_autograd():
    """Darcy's u = g·N: L u = Δu from the operator stream and the product rule equals
    autograd's u_xx + u_yy, and the residual from it equals the residual from the
    individual derivatives."""
    from metapinn.loss import solution, solution_derivatives
    from metapinn.pdes import get_pde

    pde = get_pde("darcy")
    p = init_mlp((2, 10, 10, 1), torch.Generator().manual_seed(4), torch.float64)
    X = torch.rand(30, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    theta = torch.tensor([0.3, -0.5, 0.8, 0.1], dtype=torch.float64)[:len(pde.coefficients)]
    ours = solution_derivatives(p, X, pde, pde.operator(theta))
    assert set(ours) == {"u", "u_x", "u_y", "Lu"}  # no u_xx, u_yy of their own
    Xg = X.clone().requires_grad_(True)
    u = solution(p, Xg, pde)
    g1 = torch.autograd.grad(u.sum(), Xg, create_graph=True)[0]
    gx = torch.autograd.grad(g1[:, 0].sum(), Xg, create_graph=True)[0]
    gy = torch.autograd.grad(g1[:, 1].sum(), Xg, create_graph=True)[0]
    assert torch.allclose(ours["Lu"], gx[:, 0] + gy[:, 1], rtol=0, atol=1e-10)
    each = solution_derivatives(p, X, pde)
    assert torch.allclose(pde.residual(ours, theta, X), pde.residual(each, theta, X),
                          rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["burgers", "cdr", "darcy"])
def test_loss_residual_term_equals_the_residual_of_autograd_derivatives(name):
    """The loss's residual term (operator stream, Taylor mode) equals mean R² with R
    from autograd's derivatives of the network's u, each family (float64)."""
    from metapinn.config import compose, run_config
    from metapinn.loss import loss_parts, solution
    from metapinn.nets import scratch_params
    from metapinn.tasks import make_task, task_tensors

    rc = run_config(compose([f"pde={name}", "dtype=float64", "model.hidden=[10,10]"]))
    data = task_tensors(rc.pde, make_task(rc.pde, 0, rc.tasks), 64, 16, 0, torch.float64)
    p = scratch_params(rc, 2)
    p["coef"] = p["coef"] + 0.2
    X = data["colloc"].clone().requires_grad_(True)
    u = solution(p, X, rc.pde)
    g1 = torch.autograd.grad(u.sum(), X, create_graph=True)[0]
    g2 = [torch.autograd.grad(g1[:, i].sum(), X, create_graph=True)[0] for i in range(2)]
    a, b = rc.pde.inputs
    d = {"u": u, f"u_{a}": g1[:, 0], f"u_{b}": g1[:, 1], f"u_{a}{a}": g2[0][:, 0],
         f"u_{b}{b}": g2[1][:, 1]}
    r = rc.pde.residual(d, rc.pde.from_param(p["coef"]), X)
    ours = loss_parts(p, data, rc.pde, rc.weights)["residual"].detach()
    assert float(ours) == pytest.approx(float((r * r).mean().detach()), rel=1e-11)
