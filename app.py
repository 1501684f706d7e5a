"""Hugging Face Space entry point: the MedShift before/after demo (the page `medshift demo` serves).

The model is $MEDSHIFT_MODEL (a Hub id or folder, set it in the Space's settings) or the demo checkpoint in
checkpoints/. See space/README.md for the Space's front matter and requirements.
"""

import os

from medshift.demo_app import build_demo, default_model, launch_demo

demo = build_demo(default_model())

if __name__ == "__main__":
    # a Space routes its traffic to 0.0.0.0:7860; locally the page stays on this machine
    launch_demo(demo, host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
