"""`prfaas native build|path`: the compiled (mypyc) build of the simulator and its policy (`prfaas.native`).

    PYTHONPATH=$(prfaas native build) prfaas simulate scenario.toml     # compiled simulator, same records
    prfaas native path                                                   # the current build, or exit 1

`build` compiles once per source digest (a few minutes on two cores) and prints the folder to put first on
`PYTHONPATH`; later calls print it at once. Progress and mypyc's log go to stderr / the build folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prfaas.native import build_native, built_native_dir, native_modules


def register(app: typer.Typer) -> None:
    native = typer.Typer(no_args_is_help=True, help="The compiled build of the simulator and its policy.")
    native.command("build", help="Compile (once per source digest) and print the folder for PYTHONPATH.")(build_cmd)
    native.command("path", help="Print the current sources' build folder; exit 1 when it is not built.")(path_cmd)
    app.add_typer(native, name="native")


def build_cmd(
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder (default ~/.cache/prfaas/native).")] = None,
    opt_level: Annotated[int, typer.Option(min=0, max=3, help="C optimisation level (3: fastest code).")] = 3,
    force: Annotated[bool, typer.Option(help="Rebuild even if the build exists.")] = False,
) -> None:
    if force or built_native_dir(cache_dir, opt_level=opt_level) is None:
        typer.echo(f"prfaas native: compiling {len(native_modules())} modules with mypyc ...", err=True)
    typer.echo(str(build_native(cache_dir, opt_level=opt_level, force=force)))


def path_cmd(
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder (default ~/.cache/prfaas/native).")] = None,
) -> None:
    where = built_native_dir(cache_dir)
    if where is None:
        typer.echo("prfaas native: not built for these sources (run `prfaas native build`)", err=True)
        raise typer.Exit(1)
    typer.echo(str(where))
