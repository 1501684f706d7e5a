"""The five X-DigiSkull classes and how they map to domain and dose.

The order is the dataset's ClassLabel order and the order of the MedShift UNet's class
embeddings; never reorder it.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "synthetic_low",
    "synthetic_high",
    "real_low",
    "real_normal",
    "real_exposure",
)

# the dataset's splits, in the order the card and the builder list them
SPLITS: tuple[str, ...] = ("train", "validation", "test")

DOMAINS: tuple[str, ...] = ("synthetic", "real")

# dose levels each domain was acquired at (X-DigiSkull paper, Fig. 2)
DOSES: dict[str, tuple[str, ...]] = {
    "synthetic": ("low", "high"),
    "real": ("low", "normal", "exposure"),
}


def class_name(domain: str, dose: str) -> str:
    """`class_name("real", "normal") == "real_normal"`; raises ValueError for unknown pairs."""
    if domain not in DOSES or dose not in DOSES[domain]:
        valid = ", ".join(CLASS_NAMES)
        raise ValueError(f"no X-DigiSkull class for domain={domain!r}, dose={dose!r}; valid classes: {valid}")
    return f"{domain}_{dose}"


def split_class_name(name: str) -> tuple[str, str]:
    """`split_class_name("real_normal") == ("real", "normal")`."""
    if name not in CLASS_NAMES:
        raise ValueError(f"unknown class {name!r}; valid classes: {', '.join(CLASS_NAMES)}")
    domain, dose = name.split("_", 1)
    return domain, dose
