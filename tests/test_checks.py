import numpy as np
import pytest

from onenet_hf.errors import OneNetError
from onenet_hf.options import check_octaves, check_seed, check_steps
from onenet_hf.utils.checks import check_integer
from onenet_hf.utils.ranking import check_k


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3)])
def test_a_whole_number_in_range_comes_back_as_an_int(value):
    checked = check_integer("k", value, 1, 10)
    assert checked == 3 and type(checked) is int


@pytest.mark.parametrize("value", [True, 2.0, "3", None, 0, 11, np.int64(11), 10**30])
def test_anything_else_is_one_error_naming_the_option_its_range_and_the_value(value):
    with pytest.raises(OneNetError) as error:
        check_integer("beam_size", value, 1, 10)
    given = str(value) if isinstance(value, (int, np.integer)) else repr(value)
    assert str(error.value) == f"beam_size must be an integer from 1 to 10, got {given[:20]}"


def test_the_options_share_the_rule_and_its_words():
    assert check_steps(np.int32(5)) == 5 and check_seed(np.int64(0)) == 0
    check_octaves(np.int64(3), np.int64(6))  # numpy's integers, as an array-driven caller passes them
    with pytest.raises(OneNetError, match=r"^seed must be an integer from 0 to 2\*\*63 - 1, got -1$"):
        check_seed(-1)
    with pytest.raises(OneNetError, match=r"^k must be an integer from 1 to 1,000, got 1001$"):
        check_k(1001)
    with pytest.raises(OneNetError, match=r"steps \(2\) must be at least the number of octaves \(3\)"):
        check_octaves(3, np.int64(2))
