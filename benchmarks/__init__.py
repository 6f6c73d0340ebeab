"""Benchmarks, run from the repository root as modules (``python -m benchmarks.NAME``) so they can
import the test suite's tiny policies; this file makes the folder win over the stray top-level
``benchmarks`` package that Opacus installs."""
