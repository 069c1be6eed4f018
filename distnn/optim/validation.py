"""Constructor checks the Adam family shares (Adamax, NAdam, RAdam), with PyTorch's
``ValueError`` messages; ``optimizer.require_nonnegative`` covers the plain ones."""


def require_betas(betas):
    """``0 <= beta < 1`` for both running-average coefficients."""
    for index, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
