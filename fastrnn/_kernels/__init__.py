"""Extension modules compiled from src_kernels/ at install time (see setup.py)."""
