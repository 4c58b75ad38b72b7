"""Hypothesis strategies shared by the property tests (example counts: the profiles in conftest)."""

from hypothesis import strategies as st


def json_values(text_size: int, list_size: int, leaves: int) -> st.SearchStrategy:
    """Any JSON value: null, booleans, integers, finite floats, short text, nested lists/objects."""
    scalars = (
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
        | st.text(max_size=text_size)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=list_size)
        | st.dictionaries(st.text(max_size=text_size // 2), inner, max_size=list_size),
        max_leaves=leaves,
    )
