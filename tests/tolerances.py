"""Named tolerance categories (relative), used across the suite: one place to read them."""

TOL = {
    "float32_exact": 1e-6,  # same computation, float32 rounding only
    "float32_ops": 1e-4,  # different order of float32 operations
    "order_fit": 0.25,  # fitted convergence order vs the theoretical one
    "theory_small_n": 0.12,  # theory vs small-N, short simulations (CI size)
}
