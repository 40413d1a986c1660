"""prfaas.catalog: model architectures, accelerators and the paper's measured tables, as TOML data.

Public API (see catalog/README.md for the file schema):

- `load_model(name_or_path) -> ModelArch`, `list_models()`;
- `load_accelerator(name) -> Accelerator`, `list_accelerators()`, `ComputePrecision`;
- `load_paper_profile_table() -> PaperProfileTable` (paper Table 5), `load_phi_kv_table() -> PhiKvTable`
  (paper Table 3).

Unknown names raise `core.errors.UnknownNameError` listing the known ones; bad files raise
`core.errors.ConfigError` naming the file and line.
"""

from prfaas.catalog.accelerators import (
    Accelerator,
    ComputePrecision,
    list_accelerators,
    load_accelerator,
    load_accelerators_file,
)
from prfaas.catalog.geometry import FfnGeometry, GqaGeometry, LinearGeometry, MlaGeometry, StateDtypes
from prfaas.catalog.model import ModelArch, ParamCounts, SwaTerm
from prfaas.catalog.models import list_models, load_model, load_model_file
from prfaas.catalog.paper import (
    PaperProfileRow,
    PaperProfileTable,
    PhiKvRow,
    PhiKvTable,
    load_paper_profile_table,
    load_phi_kv_table,
)

__all__ = [
    "Accelerator",
    "ComputePrecision",
    "FfnGeometry",
    "GqaGeometry",
    "LinearGeometry",
    "MlaGeometry",
    "ModelArch",
    "PaperProfileRow",
    "PaperProfileTable",
    "ParamCounts",
    "PhiKvRow",
    "PhiKvTable",
    "StateDtypes",
    "SwaTerm",
    "list_accelerators",
    "list_models",
    "load_accelerator",
    "load_accelerators_file",
    "load_model",
    "load_model_file",
    "load_paper_profile_table",
    "load_phi_kv_table",
]
