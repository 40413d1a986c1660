"""`prfaas catalog models` lists what the engine serves: the named models and every checkpoint family."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from prfaas.cli import build_app
from prfaas.commands.catalog_cmd import NAMED_SERVED, SERVED_SECTION
from prfaas.engine.families import FAMILIES
from prfaas.engine.model_check import NAMED_MODELS


def test_the_named_models_are_the_ones_the_engine_loads() -> None:
    assert tuple(row["name"] for row in NAMED_SERVED) == NAMED_MODELS


def test_models_lists_a_served_section_in_the_table_and_the_json() -> None:
    runner = CliRunner()
    table = runner.invoke(build_app(["catalog"]), ["catalog", "models"])
    assert table.exit_code == 0, table.output
    served = table.output.split(SERVED_SECTION, 1)[1]
    for name in (*NAMED_MODELS, *(f"{f.name} checkpoint" for f in FAMILIES)):
        assert name in served
    for model_type in (t for f in FAMILIES for t in f.model_types):
        assert model_type in served
    result = runner.invoke(build_app(["catalog"]), ["catalog", "models", "--json"])
    rows = json.loads(result.output)
    assert {r["name"] for r in rows if r["section"] == SERVED_SECTION} >= {"default", "smollm2"}
    assert {r["section"] for r in rows} == {"catalog", SERVED_SECTION}
