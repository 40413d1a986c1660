"""Writing a run's results: records.jsonl (one `RequestRecord` per line), summary.json, config.json.

The resolved config is written next to the results (STYLE.md §5), so every output directory says how
it was produced. Plots are separate (`sim.plots`, matplotlib imported lazily).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from prfaas.sim.request import RequestRecord


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from dataclasses, enums, tuples and dicts (keys as strings)."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {(k.value if isinstance(k, enum.Enum) else str(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    return obj


def record_line(rec: RequestRecord) -> str:
    data = asdict(rec)
    data["state"] = rec.state.value
    return json.dumps(data, sort_keys=True)


def write_records(path: Path, records: Iterable[RequestRecord]) -> None:
    with path.open("w") as fh:
        for rec in records:
            fh.write(record_line(rec) + "\n")


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")
