"""The project's own lab: the benchmark, the reproduction of the results page, the tutorials' own loops,
machine records, synthetic data and the glibc malloc tuning. It uses the template (litvision); the
template never uses it, so deleting scripts/lab/ leaves a working template."""
