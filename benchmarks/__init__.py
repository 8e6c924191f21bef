"""Performance benchmarks of the offline build (issue 6): `python -m benchmarks.bench --help`."""
