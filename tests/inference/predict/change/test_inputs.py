"""A change map's earlier date (inference.predict.change.inputs): its order and its maps."""

from __future__ import annotations

import pytest
import rasterio

from core.errors import InputDataError
from inference.predict.change.inputs import check_date_order, earlier_probability
from inference.predict.job import PredictChange
from tests.support.rasters import smooth_stack, write_stack


def test_the_earlier_date_must_not_be_the_later_one(tmp_path):
    """Its gain would be reported as loss; either date unknown: no check."""
    earlier = str(write_stack(tmp_path / "isa_class.tif", smooth_stack(8, 8, count=1), ("c",)))
    with rasterio.open(earlier, "r+") as ds:
        ds.update_tags(month="2021-06")
    for change, flag in ((PredictChange(compare_with=earlier), "--compare-with"),
                         (PredictChange(compare_with=earlier, earlier_stack=earlier),
                          "--earlier-stack")):
        check_date_order(change, "2021-07")
        check_date_order(change, None)
        with pytest.raises(InputDataError) as error:
            check_date_order(change, "2019-06")
        assert str(error.value) == (f"{flag} is of 2021-06, later than this date (2019-06): a "
                                    "change map runs from the earlier date to the later one, "
                                    "so predict the later stack and compare it with the "
                                    "earlier map")
    with pytest.raises(InputDataError) as error:
        PredictChange(earlier_stack=earlier)
    assert str(error.value) == ("--earlier-stack decides a change map: give --compare-with "
                                "EARLIER_class.tif too")


@pytest.mark.parametrize("spectral, instead", [
    (False, "pass --change-margin 0"), (True, "drop --earlier-stack and pass --change-margin 0")])
def test_an_earlier_map_without_its_probabilities_says_what_to_drop(tmp_path, spectral,
                                                                    instead):
    rule = "the spectral change rule" if spectral else "a change margin"
    with pytest.raises(InputDataError) as error:
        earlier_probability(str(tmp_path / "isa_class.tif"), spectral)
    assert str(error.value) == (
        f"{tmp_path / 'isa_prob.tif'} does not exist: {rule} decides change on both dates' "
        "probabilities, so the earlier date's probability COG must be beside --compare-with "
        f"(or {instead} to difference the class maps)")
    (tmp_path / "isa_prob.tif").touch()
    assert earlier_probability(str(tmp_path / "isa_class.tif")) == str(tmp_path / "isa_prob.tif")
