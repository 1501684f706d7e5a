"""X-DigiSkull: build the sim-to-real skull X-ray dataset from raw simulator and C-arm exports."""

from xdigiskull.classes import CLASS_NAMES, DOMAINS, DOSES, class_name, split_class_name

__version__ = "0.1.0"

__all__ = ["CLASS_NAMES", "DOMAINS", "DOSES", "class_name", "split_class_name", "__version__"]
