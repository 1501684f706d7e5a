"""Hugging Face Space entry point: the MedShift before/after demo (the page `medshift demo` serves).

The model is $MEDSHIFT_MODEL (a Hub id or folder, set it in the Space's settings) or the demo checkpoint in
checkpoints/. See space/README.md for the Space's front matter and requirements.
"""

from medshift.demo_app import build_demo, default_model, launch_demo, server_address

demo = build_demo(default_model())

if __name__ == "__main__":
    # a Space sets GRADIO_SERVER_NAME=0.0.0.0 and GRADIO_SERVER_PORT=7860; locally the page stays on this machine
    host, port = server_address()
    launch_demo(demo, host=host, port=port)
