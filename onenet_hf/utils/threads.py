"""Thread pools of the libraries a query goes through, kept from fighting over a small machine's cores."""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cache


@cache
def _blas_pools():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def one_blas_thread() -> AbstractContextManager:
    """A context in which numpy's BLAS (OpenBLAS) runs on the calling thread alone.

    A gallery query's products are small (a few thousand rows at most), and OpenBLAS's worker threads spin for about
    a tenth of a second after each call: on 2 cores they took one from the torch work that follows, and the decoder
    re-ranked 100 candidates in 362 ms right after a 1M-gallery search against 58 ms with one BLAS thread.
    """
    return _blas_pools().limit(limits=1)


__all__ = ["one_blas_thread"]
