"""Tests of the benchmarks themselves (not of the product): run with the suite, as `testpaths` lists them."""
