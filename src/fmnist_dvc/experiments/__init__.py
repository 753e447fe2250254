"""Tooling no stage runs: sweeps on Ray, presets, reports, plot pages and figures across runs."""
