"""Commands generated from config dataclasses (`medshift train`, `medshift train-vae`, `medshift evaluate`): each
field is one option, so the dataclass is the one home of every default and help text. The generator is the one
both packages' commands use, `xdigiskull.command_line`."""

from xdigiskull.command_line import config_command, option

__all__ = ["config_command", "option"]
