"""docs/models.md lists exactly the registered models, and its recipe table agrees with them.

The models ``isamap-train`` offers are in the first table and the recipe table; the retired
ones, whose files still map, in "Retired models", with why they left.

The page is written by hand for readers; this keeps it from drifting when a model or a recipe
value changes.
"""

import re

from tests.support import REPO_ROOT
from training.models import MODELS, REGISTRY, recipe_for

PAGE = (REPO_ROOT / "docs" / "models.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = PAGE.index(title)
    end = PAGE.find("\n## ", start + 1)
    return PAGE[start:end if end > 0 else None]


def _rows(text: str) -> dict[str, list[str]]:
    """First-column model names -> the row's cells, for every table row of ``text``."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for name in re.findall(r"`([\w-]+)`", cells[0]) if line.startswith("|") else []:
            rows[name] = cells
    return rows


def test_the_model_table_names_every_model_isamap_train_offers():
    assert set(_rows(PAGE[:PAGE.index("## Recipes")])) == set(REGISTRY.trainable())


def test_the_retired_table_names_every_retired_model_with_the_options_that_train_it():
    rows = _rows(_section("## Retired models"))
    assert set(rows) == set(MODELS) - set(REGISTRY.trainable()) != set()
    for name, cells in rows.items():
        assert MODELS[name].retired.split("--model unet-s2 ", 1)[-1] in cells[2], name


def test_the_recipe_table_agrees_with_each_recipe():
    rows = _rows(_section("## Recipes"))
    assert set(rows) == set(REGISTRY.trainable())
    for name, cells in rows.items():
        recipe = recipe_for(name)
        patch, optimiser, batch, epochs = cells[3], cells[4], cells[5], cells[6]
        assert patch.split()[0] == str(recipe.patch_size), name
        assert optimiser.lower().startswith(recipe.optimizer), name
        assert f"{recipe.lr:.0e}".replace("e-0", "e-") in optimiser.replace(" ", "") or \
            f"{recipe.lr:g}" in optimiser, (name, optimiser, recipe.lr)
        assert batch == str(recipe.batch_size), name
        assert epochs == f"{recipe.epochs} / {recipe.patience}", name
        assert all(f"`{t}`" in cells[2] for t in recipe.targets), name
