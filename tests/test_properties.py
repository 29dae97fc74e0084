"""Property-based checks (hypothesis) of config and data validation: any value a user can
type either gives a config that holds exactly that value, or a ValueError that names the
field; any data with a NaN or inf anywhere is refused with its position."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ppl_gen.config import CONFIGS, config_from_dict  # noqa: E402
from ppl_gen.data.base import as_tensor_dict  # noqa: E402

ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                      st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=8), st.sampled_from(["auto", "fx", "inductor", "eager",
                                                            "nuts", "hmc", "dense"]))
NUMERIC_FIELDS = sorted({(engine, f.name) for engine, cls in CONFIGS.items()
                         for f in dataclasses.fields(cls)
                         if any(t in str(f.type) for t in ("int", "float", "bool", "str"))})


@pytest.mark.parametrize("engine, field", NUMERIC_FIELDS,
                         ids=[f"{e}.{f}" for e, f in NUMERIC_FIELDS])
@settings(max_examples=40, deadline=None)
@given(value=ANY_VALUE)
def test_a_config_field_holds_the_value_or_names_itself(engine, field, value):
    if engine == "nuts" and field == "num_steps":
        with pytest.raises(ValueError, match="num_steps"):
            config_from_dict(engine, {field: value})
        return
    try:
        config = config_from_dict(engine, {field: value})
    except ValueError as error:
        message = str(error)
        # the field itself, or the field it contradicts (kernel vs engine; iwae particles)
        assert field in message or "contradicts engine" in message, message
        return
    except TypeError as error:  # only non-iterables given as tuple fields (betas)
        assert field == "betas", error
        return
    stored = getattr(config, field)
    if isinstance(value, float) and math.isnan(value):
        pytest.fail(f"{engine}.{field} accepted NaN")
    assert stored == value or (field == "betas"), (stored, value)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
       position=st.integers(0, 10**6), as_numpy=st.booleans())
def test_data_with_a_non_finite_value_is_refused_with_its_position(shape, bad, position,
                                                                   as_numpy):
    values = np.arange(int(np.prod(shape)), dtype=float).reshape(shape)
    flat_index = position % values.size
    values.reshape(-1)[flat_index] = bad
    data = {"x": values if as_numpy else torch.as_tensor(values)}
    expected = tuple(int(i) for i in np.unravel_index(flat_index, shape))
    with pytest.raises(ValueError, match=r"'x' contains 1 NaN/inf") as caught:
        as_tensor_dict(data)
    assert f"first at index {expected}" in str(caught.value)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20))
def test_finite_data_passes_unchanged(values):
    out = as_tensor_dict({"x": values, "n": len(values)})
    assert out["n"] == len(values)
    np.testing.assert_allclose(out["x"].numpy(), np.asarray(values, dtype=np.float32),
                               rtol=1e-6)
