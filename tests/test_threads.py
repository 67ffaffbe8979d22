"""one_blas_thread: numpy's BLAS on one thread inside, as it was after."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

from onenet_hf.utils.threads import one_blas_thread


def blas_threads() -> dict[str, int]:
    return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_numpy_blas_runs_on_one_thread_inside_and_as_before_after():
    np.ones((64, 64)) @ np.ones(64)  # numpy's BLAS loaded
    before = blas_threads()
    assert before  # numpy's wheels carry OpenBLAS
    with one_blas_thread():
        assert set(blas_threads().values()) == {1}
    assert blas_threads() == before
