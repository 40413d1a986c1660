"""`engine.model_check`: the config-only check agrees with what loading the checkpoint decides, for every family."""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.core.errors import UnknownNameError
from prfaas.engine.errors import UnsupportedModelError
from prfaas.engine.families import family_for_model_type, text_config
from prfaas.engine.hf import transformers
from prfaas.engine.model_check import check_model, checkpoint_model_type
from prfaas.engine.tiny import TINY_CONFIGS, tiny_config


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_every_supported_family_passes_from_its_config_json_alone(family: str, tmp_path: Path) -> None:
    cfg = tiny_config(family)
    cfg.save_pretrained(str(tmp_path))  # config.json only: the check never needs weights
    assert checkpoint_model_type(tmp_path) == str(text_config(cfg).model_type)
    check_model(str(tmp_path))


def test_a_multimodal_config_is_judged_by_its_text_section(tmp_path: Path) -> None:
    transformers.Qwen3_5Config().save_pretrained(str(tmp_path))
    loaded = transformers.AutoConfig.from_pretrained(str(tmp_path))
    assert checkpoint_model_type(tmp_path) == str(text_config(loaded).model_type)
    check_model(str(tmp_path))


def test_an_unsupported_family_gets_the_engines_error(tmp_path: Path) -> None:
    transformers.JambaConfig(num_hidden_layers=2, hidden_size=64).save_pretrained(str(tmp_path))
    with pytest.raises(UnknownNameError) as raised:
        family_for_model_type("jamba")
    with pytest.raises(UnknownNameError) as checked:
        check_model(str(tmp_path))
    assert str(checked.value) == str(raised.value)
    assert str(checked.value).startswith("unknown model type 'jamba'; known: ")


def test_names_and_folders_that_are_no_model(tmp_path: Path) -> None:
    check_model("default")
    check_model("smollm2")
    with pytest.raises(UnknownNameError, match="unknown model 'nope'; known: "):
        check_model("nope")
    with pytest.raises(UnsupportedModelError, match=r"has no config\.json"):
        check_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UnsupportedModelError, match="cannot read it as JSON"):
        check_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UnsupportedModelError, match="has no model_type"):
        check_model(str(tmp_path))
