"""The optimisation uses' memory budget: the pixels a photo is optimised at, the estimate, the refusal up front."""

import subprocess
import sys

import pytest

from onenet_hf.create.memory import MEMORY_BUDGET_MB, check_memory, largest_size, memory_estimate_mb, optimized_shape
from onenet_hf.errors import OneNetError


@pytest.mark.parametrize(
    ("width", "height", "size", "expected"),
    [
        (600, 400, 260, (390, 260)),  # a photo up to 2:1: its short side is the size, as before
        (400, 800, 100, (100, 200)),
        (39_990, 1_000, 260, (2_325, 58)),  # a long one: size x size x 2 pixels, not 10,400x260
        (16_000, 2, 260, (4_225, 32)),  # a thread: squeezed along its length, never thinner than 32
    ],
)
def test_a_photo_is_optimised_at_a_bounded_number_of_pixels_whatever_its_shape(width, height, size, expected):
    assert optimized_shape(width, height, size) == expected


def test_the_memory_check_refuses_what_would_pass_the_budget_and_names_the_size_that_fits():
    check_memory(260, images=4)  # within the budget: nothing said
    with pytest.raises(
        OneNetError, match=r"size 1024 \(1024x1024 pixels\) needs about 3,371 MiB .* use size 564 or less$"
    ):
        check_memory(1024)
    with pytest.raises(OneNetError, match=r"x 8 images\) .* use size 199 or less or fewer images"):
        check_memory(260, images=8)
    with pytest.raises(OneNetError, match="use size 399 or less"):
        check_memory(512, (4_000, 1_000))  # a photo 4:1: optimised at 2 x size x size pixels
    fits, too_large = optimized_shape(4_000, 1_000, 399), optimized_shape(4_000, 1_000, 400)
    assert memory_estimate_mb(*fits) <= MEMORY_BUDGET_MB < memory_estimate_mb(*too_large)
    assert largest_size((4_000, 1_000)) == 399 and largest_size(images=8) == 199


def test_the_budget_is_checked_without_torch():
    code = "import sys, onenet_hf.create.memory; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
