"""docs/recipe-reference.md is the recipe schema as Markdown; it must not drift from it."""

from __future__ import annotations

from pathlib import Path

from lmforge.core.schema import fields_markdown
from lmforge.recipe import Recipe


def test_the_recipe_reference_matches_the_schema():
    doc = Path(__file__).parents[1] / "docs" / "recipe-reference.md"
    assert doc.read_text(encoding="utf-8") == fields_markdown(Recipe), (
        "docs/recipe-reference.md is stale: run `lmforge schema --markdown > "
        "docs/recipe-reference.md`"
    )
