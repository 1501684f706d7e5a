"""`medshift` command line: translate, train, train-vae, evaluate."""

from __future__ import annotations

import typer

from medshift.evaluate import evaluate
from medshift.training.train import train
from medshift.training.train_vae import train_vae
from medshift.translate import translate

app = typer.Typer(
    name="medshift",
    help="MedShift: sim-to-real X-ray translation with class-conditional latent flow matching.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold a Hub token
)
app.command()(translate)
app.command()(train)
app.command(name="train-vae")(train_vae)
app.command()(evaluate)

if __name__ == "__main__":
    app()
