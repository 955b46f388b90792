"""Spec commands for a new user's own CRM export: draft a spec from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abm_ml.cli.app import app, console, err_console

spec_app = typer.Typer(
    help="Dataset specs: draft one from a CRM export (every key is in docs/spec.md).",
    no_args_is_help=True,
)
app.add_typer(spec_app, name="spec")


@spec_app.command("init")
def init(
    export: Annotated[Path, typer.Argument(help="The CRM export (CSV or Parquet) to describe.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the draft (default: print it).")
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="The outcome column, when the guess would be wrong.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
) -> None:
    """Draft a spec from an export: types, ids, label values, dates, amount, placeholders.

    Columns that look filled in after the outcome are put under `exclude:` with the reason.
    Check every guess, then run `abm-ml validate SPEC --leak-check`.
    """
    from abm_ml.data.draft import draft_spec, render_draft
    from abm_ml.errors import AbmInputError

    if out is not None and out.exists() and not force:
        raise AbmInputError("the file exists; pass --force to overwrite it", source=str(out))
    draft = draft_spec(export, label=label)
    text = render_draft(draft, out)
    if out is None:
        _check_loads(text)
        print(text, end="")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        _check_loads(text, out)
        console.print(
            f"Draft spec -> {out}: {len(draft.features)} features, {len(draft.exclude)} excluded."
        )
    if draft.label is None:
        err_console.print(
            "[yellow]No column reads as won/lost:[/] set `label:` in the draft or pass --label."
        )


def _check_loads(text: str, path: Path | None = None) -> None:
    """The draft must load as it is (a failure is a bug of the drafter, not the user's input)."""
    import tempfile

    from abm_ml.data.spec import load_spec

    if path is not None:
        load_spec(path)
        return
    with tempfile.TemporaryDirectory() as folder:
        draft = Path(folder) / "draft.yaml"
        draft.write_text(text, encoding="utf-8")
        load_spec(draft)
