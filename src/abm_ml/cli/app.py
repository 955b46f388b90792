"""The Typer application, its consoles and the options and helpers commands share."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abm_ml import config as cfg
from abm_ml.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, AbmInputError

app = typer.Typer(
    name="abm-ml",
    help=(
        "Which target accounts to work first, and why.\n\n"
        "Exit codes: 0 ok, 2 bad input (the message names the file, row or field), "
        "3 a monitoring threshold crossed (monitor, rank --monitor, retrain), 1 internal error."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
console = Console(stderr=False)
err_console = Console(stderr=True)

SpecArg = Annotated[
    Path, typer.Argument(help="Dataset spec (YAML) describing a CRM export; see training/specs/.")
]


TableOpt = Annotated[
    str | None, typer.Option(help="Table to read when ACCOUNTS is a database URL.")
]
QueryOpt = Annotated[
    str | None, typer.Option(help="SQL query to run when ACCOUNTS is a database URL.")
]


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", help="Registered model alias ('champion', 'challenger') or version number."
    ),
]


def load_model(ref: str):
    """Entry point's loader: the configured store's scorer for an alias or version number."""
    from abm_ml.registry.store import configure, load_scorer

    configure()
    return load_scorer(cfg.registered_model_name(), ref)


def registered_input(ref: str):
    """The input spec a registered version carries as a tag (no model download), or None."""
    from abm_ml.data.records import InputSpec
    from abm_ml.registry.store import configure, registered_input_spec

    configure()
    spec = registered_input_spec(cfg.registered_model_name(), ref)
    return InputSpec.model_validate(spec) if spec else None


def metrics_table(title: str, frame) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for column in frame.columns:
        table.add_column(column)
    for idx, row in frame.iterrows():
        table.add_row(str(idx), *[str(v) for v in row])
    return table


def main() -> None:
    """Console entry point: user mistakes exit 2 with one line, anything else exits 1."""
    import logging

    # MLflow's INFO lines and artifact progress bars drown the tables sales ops read.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow sets its loggers' level on import (after this runs), from this variable.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        app()
    except AbmInputError as error:
        err_console.print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:
        if os.environ.get("ABM_ML_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(error).__name__}: {escape(str(error))} (set ABM_ML_DEBUG=1 for details)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_INTERNAL)
