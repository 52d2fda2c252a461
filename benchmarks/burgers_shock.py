"""`metapinn identify` on the classic Burgers shock benchmark, as a new user would run it.

The case of Raissi, Perdikaris & Karniadakis (2019): u(x, 0) = −sin πx on [−1, 1],
ν = 0.01/π ≈ 0.00318, observed at 2,000 random nodes of the 256 × 100 grid
(t = 0, 0.01, …, 0.99), clean and with Gaussian noise of 1 % of std(u). The data come
from metapinn's Cole–Hopf reference (checked at this ν against Basdevant et al. 1986's
steepest slope, 152.00516, in tests/pdes/test_burgers_reference.py). ν lies outside the
Burgers family's prior [0.01, 0.1] and its ood range [0.004, 0.01): neither the defaults
nor a meta-learned initialisation were built for it.

For each noise level, ``metapinn identify pde=burgers observations=F`` runs in a
subprocess with its defaults (plus ``--set`` overrides), from scratch and from each
``--init`` file (the init's hidden widths are passed as ``model.hidden``). Printed: the
median ν over identify's runs, its error, the runs' range, and the wall time of the whole
command (start-up, compile and every run included). First, per noise level, the noise
floor: ν fitted to the same values by least squares with the exact Cole–Hopf solution
(what a perfect model would give; a few seconds), so that the PINN's error can be split
into what the noise causes and what the PINN adds.

The error is signed (+: ν too high), so that it can be set against the noise floor's.
``--draws`` repeats everything for other draws of the observation points and the noise
(seed 0 is the draw quoted in the README; the floor alone moves by ±0.4 % between draws).

Usage: python benchmarks/burgers_shock.py [--noise 0.01 0] [--n-obs 2000] [--draws 0 1 2]
           [--init results/standard/meta/burgers/reptile/seed0/init.pt ...]
           [--skip-scratch] [--set identify.seeds=[0] threads=2 ...] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from metapinn.identify import export_observations
from metapinn.ncio import read_netcdf
from metapinn.pdes import get_pde
from metapinn.pdes.burgers import SHOCK_NU, reference_solution, shock_grid, shock_observations
from metapinn.tasks import Task


def run_identify(obs: Path, out: Path, init: str | None, overrides: list[str]) -> tuple:
    """(median ν, min ν, max ν, wall seconds, output and log) of one identify command."""
    cmd = ["metapinn", "identify", "pde=burgers", f"observations={obs}", f"out={out}",
           *overrides]
    if init:
        hidden = torch.load(init, map_location="cpu", weights_only=True)["hidden"]
        cmd += [f"init={init}", f"model.hidden=[{','.join(map(str, hidden))}]"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    ds = read_netcdf(out)
    runs = ds["coefficients_run"].sel(coef="nu").values
    return (float(ds["coefficients"].sel(coef="nu")), runs.min(), runs.max(), wall,
            r.stdout + r.stderr)


def exact_fit(points: np.ndarray, values: np.ndarray) -> float:
    """ν minimising the squared misfit of the exact (Cole–Hopf) solution at the observation
    points, which are nodes of the benchmark's grid."""
    x, t = shock_grid()
    ix = np.abs(points[:, :1] - x).argmin(axis=1)
    it = np.abs(points[:, 1:] - t).argmin(axis=1)

    def misfit(log_nu):
        return float(np.sum((reference_solution(np.exp(log_nu), x, t)[it, ix] - values) ** 2))

    guess = np.log(SHOCK_NU)
    return float(np.exp(minimize_scalar(misfit, bracket=(guess - 0.1, guess + 0.1),
                                        tol=1e-10).x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.0])
    ap.add_argument("--n-obs", type=int, default=2000)
    ap.add_argument("--draws", type=int, nargs="+", default=[0],
                    help="seeds of the observation points and noise (one data set each)")
    ap.add_argument("--init", nargs="*", default=[])
    ap.add_argument("--skip-scratch", action="store_true",
                    help="run identify from the --init files only")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides",
                    help="extra identify overrides, e.g. identify.seeds=[0] threads=2")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="burgers_shock_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    pde = get_pde("burgers")
    print(f"Burgers shock: nu = 0.01/pi = {SHOCK_NU:.6g}, {args.n_obs} observations; "
          f"overrides: {' '.join(args.overrides) or '(none)'}; files in {out_dir}")
    print(f"{'noise':>6s} {'draw':>4s} {'init':>40s} {'nu':>10s} {'error %':>8s} "
          f"{'runs':>22s} {'wall s':>7s}")
    for noise in args.noise:
        for draw in args.draws:
            pts, vals = shock_observations(args.n_obs, noise, seed=draw)
            obs = out_dir / f"shock_noise{noise:g}_draw{draw}.nc"
            export_observations(pde, Task("burgers", 0, "shock", np.array([SHOCK_NU]),
                                          np.zeros((0, 0)), pts, vals), obs)
            nu = exact_fit(pts, vals)
            print(f"{noise:6.2%} {draw:4d} {'exact solution, least squares':>40s} {nu:10.6g} "
                  f"{100 * (nu / SHOCK_NU - 1):+8.3f}", flush=True)
            starts = [*([] if args.skip_scratch else [None]), *args.init]
            for k, init in enumerate(starts, start=int(args.skip_scratch)):
                out = out_dir / f"identified_noise{noise:g}_draw{draw}_{k}.nc"
                nu, lo, hi, wall, printed = run_identify(obs, out, init, args.overrides)
                out.with_suffix(".txt").write_text(printed)
                print(f"{noise:6.2%} {draw:4d} {init or 'scratch':>40s} {nu:10.6g} "
                      f"{100 * (nu / SHOCK_NU - 1):+8.3f} {f'{lo:.5g} to {hi:.5g}':>22s} "
                      f"{wall:7.0f}", flush=True)


if __name__ == "__main__":
    main()
