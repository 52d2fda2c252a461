"""metapinn: meta-learned initialisations for physics-informed neural networks.

The package solves *families* of inverse PDE problems: each task is one PDE instance with
unknown coefficients and sparse noisy observations; a PINN learns the solution and the
coefficients jointly. See docs/design.md for the science and the layout.
"""

__version__ = "0.1.0"
