"""Service commands: deploy a registered model to the BentoML store, serve it over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from abm_ml.cli.app import ModelOpt, app, console


@app.command()
def deploy(
    model: ModelOpt = "champion",
) -> None:
    """Import a registered model version into the BentoML model store for serving."""
    from abm_ml.registry import tracking
    from abm_ml.service.deploy import deploy as do_deploy

    tracking.configure()
    tag = do_deploy(model)
    console.print(
        f"Imported into the BentoML store as {tag}. Start it with: abm-ml serve --model {model}"
    )


@app.command()
def serve(
    model: ModelOpt = "champion",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (default ABM_ML_WORKERS, else one per core).", min=1),
    ] = None,
) -> None:
    """Serve scores over HTTP (BentoML): /score, /rank, /explain, /healthz, /readyz, /metadata."""
    from abm_ml.registry import tracking
    from abm_ml.service.launch import serve as do_serve

    tracking.configure()
    do_serve(host=host, port=port, alias=model, workers=workers)
