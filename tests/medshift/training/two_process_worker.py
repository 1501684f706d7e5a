"""Run by `accelerate launch --num_processes 2 --cpu` from test_train.py: a few training steps,
then every rank writes the weights it ended with (raw and EMA) to OUT/rank-<index>.safetensors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from medshift.training.train import run_training
from synthetic import tiny_train_config  # tests/ is on PYTHONPATH (test_train.py sets it)


def main() -> None:
    dataset, vae, unet_config, output_dir = sys.argv[1:5]
    unet = json.loads(Path(unet_config).read_text())
    result = run_training(tiny_train_config(dataset, vae, unet, output_dir, batch_size=4, max_steps=4, warmup_steps=1))
    weights = {f"raw.{name}": value.contiguous() for name, value in result.unet.state_dict().items()}
    weights.update({f"ema.{name}": value.contiguous() for name, value in result.ema_unet.state_dict().items()})
    rank = os.environ["RANK"]  # set by the launcher
    save_file(weights, str(Path(output_dir) / f"rank-{rank}.safetensors"))


if __name__ == "__main__":
    main()
