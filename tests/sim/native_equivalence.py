"""Run every frozen-reference case of the simulator's equivalence tests in this process and write their outputs.

    PYTHONPATH=<build>:tests/sim python tests/sim/native_equivalence.py OUT.json

`tests/sim/test_native_build.py` runs it once on the pure-Python package and once on the compiled build
(`prfaas.native`) first on PYTHONPATH, and compares both with the references and with each other. The JSON
holds {"native": whether the simulator module is compiled, "simulator_file": its path, "cases": {name: outputs}}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import test_multisite_speed_equivalence as multisite
import test_speed_equivalence as two_site

from prfaas.native import is_native
from prfaas.sim import simulator


def main(out: Path) -> None:
    cases = {f"two_site/{name}": json.loads(json.dumps(two_site.outputs(run())))
             for name, run in two_site.CASES.items()}
    cases |= {f"multisite/{name}": json.loads(json.dumps(multisite.outputs(run())))
              for name, run in multisite.CASES.items()}
    out.write_text(json.dumps({"native": is_native(), "simulator_file": str(simulator.__file__), "cases": cases}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
