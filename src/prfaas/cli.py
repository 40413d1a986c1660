"""The one `prfaas` command. Each sub-command lives in `prfaas.commands.<name>` and is imported lazily,
so `prfaas plan` never imports torch and `prfaas up` does not pay for matplotlib until it plots.

Every `PrfaasError` becomes a one-line message on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from prfaas.core.errors import PrfaasError

APP_HELP = ("prfaas: Prefill-as-a-Service for hybrid-attention LLMs. Plan a PrfaaS-PD deployment, simulate its "
            "scheduling, and run it (OpenAI-compatible gateway, PrfaaS prefill nodes, PD nodes, TCP KV transport).")

# name -> (module, help). A module exposes `register(app: typer.Typer) -> None`.
COMMAND_MODULES: dict[str, tuple[str, str]] = {
    "plan": ("prfaas.commands.plan", "Throughput-optimal threshold and P/D split (the planner)."),
    "bandwidth": ("prfaas.commands.bandwidth", "Egress bandwidth a prefill cluster needs."),
    "catalog": ("prfaas.commands.catalog_cmd", "List models and accelerators in the catalog."),
    "simulate": ("prfaas.commands.simulate", "Discrete-event simulation of the scheduling policies."),
    "profile": ("prfaas.commands.profile", "Measure this engine's prefill/decode costs into a perf profile."),
    "up": ("prfaas.commands.up", "Start a whole deployment (default: embedded model on localhost)."),
    "serve": ("prfaas.commands.serve", "Start one process of a deployment."),
    "bench": ("prfaas.commands.bench", "Load generation, live benchmarks and link emulation."),
    "demo": ("prfaas.commands.demo", "Drive a mixed workload through a running deployment."),
    "certs": ("prfaas.commands.certs", "TLS material for the KV transport (dev CA, node certificates)."),
    "native": ("prfaas.commands.native_cmd", "The compiled (mypyc) build of the simulator and its policy."),
    "vllm": ("prfaas.commands.vllm_cmd", "The vLLM backend: its environment, tiny checkpoints, command lines."),
}


def build_app(argv: list[str]) -> typer.Typer:
    """Build the typer app, importing only the sub-command that argv names (all of them for --help)."""
    app = typer.Typer(no_args_is_help=True, add_completion=False, help=APP_HELP)

    @app.callback()
    def _root() -> None:
        """prfaas: Prefill-as-a-Service for hybrid-attention LLMs."""
    wanted = [a for a in argv if not a.startswith("-")][:1]
    names = wanted if wanted and wanted[0] in COMMAND_MODULES else list(COMMAND_MODULES)
    for name in names:
        module_name, _help = COMMAND_MODULES[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith("prfaas.commands"):
                continue  # sub-command not built yet
            raise
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app = build_app(args)
        app(args=args, prog_name="prfaas", standalone_mode=True)
    except PrfaasError as exc:
        typer.echo(f"prfaas: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
