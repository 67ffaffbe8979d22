"""OneNet's benchmarks: `python -m bench.<group>.<script>` from the repository root (bench/README.md)."""
