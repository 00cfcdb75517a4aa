"""The prediction workflow's own rules (inference.predict.workflow)."""

from __future__ import annotations

import pytest

from core.errors import ModelError
from inference.predict.workflow import isa_class_index


def test_the_impervious_class_is_found_by_name_and_a_pervious_one_refused():
    """--isa-class 0 of a model whose class 0 is named pervious reported the pervious area as
    ISA (exit 0); the class's recorded name says it is not impervious."""
    assert isa_class_index(("pervious", "impervious")) == 1
    assert isa_class_index(("pervious", "impervious"), 1) == 1
    with pytest.raises(ModelError) as error:
        isa_class_index(("pervious", "impervious"), 0)
    assert str(error.value) == ("--isa-class 0 is the model's class 'pervious', which is not "
                                "impervious (its classes: 0 pervious, 1 impervious); give "
                                "--isa-class 1, or leave it out")
