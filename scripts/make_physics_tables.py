"""Precompute the X-ray spectra and attenuation curves the phantom needs.

The phantom (`xdigiskull.phantom`) must run without spekpy and xraydb, so this script evaluates the few
curves it needs once and stores them in `xdigiskull/phantom/data/physics_tables.npz`:

- `energies_kev`: energy bin centres (keV),
- `spectrum_<name>`: photon fluence per bin (photons / cm^2 / mAs at 1 m) of a tungsten-anode tube for each
  named beam quality in `BEAMS` (spekpy),
- `mass_mu_<material>`: total mass attenuation coefficient (cm^2/g) of each material in `MATERIALS` (xraydb),
- `density_<material>`: nominal density (g/cm^3),
- `detector_absorption`: fraction of photons absorbed in the 600 um CsI scintillator of the flat detector.

Run it from the repository root (needs the `physics` extra: `pip install -e .[physics]`):

    python scripts/make_physics_tables.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import spekpy
import xraydb

ENERGIES_KEV = np.arange(10.0, 81.0, 1.0)

# beam qualities of the Azurion-like acquisitions: (kVp, mm Al, mm Cu). Low-dose fluoroscopy runs use more
# copper pre-filtration; single exposures use a harder tube voltage and no copper.
BEAMS: dict[str, tuple[float, float, float]] = {
    "real_low": (70.0, 2.5, 0.2),
    "real_normal": (75.0, 2.5, 0.1),
    "real_exposure": (80.0, 2.5, 0.0),
}

# ICRU-44 compositions (mass fractions) and densities (g/cm^3).
MATERIALS: dict[str, tuple[dict[str, float], float]] = {
    "soft_tissue": ({"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.708, "Na": 0.002, "P": 0.003, "S": 0.003,
                     "Cl": 0.002, "K": 0.003}, 1.06),
    "brain": ({"H": 0.107, "C": 0.145, "N": 0.022, "O": 0.712, "Na": 0.002, "P": 0.004, "S": 0.002,
               "Cl": 0.003, "K": 0.003}, 1.04),
    "bone": ({"H": 0.034, "C": 0.155, "N": 0.042, "O": 0.435, "Na": 0.001, "Mg": 0.002, "P": 0.103,
              "S": 0.003, "Ca": 0.225}, 1.92),
    # tooth enamel is nearly pure hydroxyapatite, Ca5(PO4)3OH
    "enamel": ({"H": 0.002, "O": 0.414, "P": 0.185, "Ca": 0.399}, 2.9),
    # platinum-iridium guidewire tip / marker
    "platinum": ({"Pt": 0.9, "Ir": 0.1}, 21.5),
    # the slanted-edge test object (IEC 62220-1: a 1 mm tungsten plate)
    "tungsten": ({"W": 1.0}, 19.3),
    "water": ({"H": 0.1119, "O": 0.8881}, 1.0),
}

DETECTOR_CSI_THICKNESS_CM = 0.06


def mass_mu(composition: dict[str, float], energies_kev: np.ndarray) -> np.ndarray:
    """Mass attenuation coefficient (cm^2/g) of a mixture given by element mass fractions."""
    energies_ev = energies_kev * 1000.0
    return sum(fraction * xraydb.mu_elam(element, energies_ev) for element, fraction in composition.items())


def spectrum(kvp: float, al_mm: float, cu_mm: float, energies_kev: np.ndarray) -> np.ndarray:
    """Photon fluence per 1 keV bin (1 / cm^2 / mAs at 1 m) of a 12 degree tungsten anode."""
    spek = spekpy.Spek(kvp=kvp, th=12.0, dk=0.5)
    spek.filter("Al", al_mm)
    if cu_mm > 0:
        spek.filter("Cu", cu_mm)
    kev, fluence = spek.get_spectrum()  # per keV
    # integrate the fine spectrum into our 1 keV bins
    binned = np.zeros_like(energies_kev)
    for i, centre in enumerate(energies_kev):
        inside = (kev >= centre - 0.5) & (kev < centre + 0.5)
        binned[i] = fluence[inside].sum() * 0.5
    return binned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parents[1] / "xdigiskull" / "phantom" / "data" / "physics_tables.npz"
    parser.add_argument("--out", type=Path, default=default_out, help="where to write the .npz")
    args = parser.parse_args()

    tables: dict[str, np.ndarray] = {"energies_kev": ENERGIES_KEV.astype(np.float32)}
    for name, (kvp, al, cu) in BEAMS.items():
        tables[f"spectrum_{name}"] = spectrum(kvp, al, cu, ENERGIES_KEV).astype(np.float32)
        tables[f"kvp_{name}"] = np.float32(kvp)
    for name, (composition, density) in MATERIALS.items():
        tables[f"mass_mu_{name}"] = mass_mu(composition, ENERGIES_KEV).astype(np.float32)
        tables[f"density_{name}"] = np.float32(density)
    csi_mu = mass_mu({"Cs": 0.5115, "I": 0.4885}, ENERGIES_KEV) * 4.51
    tables["detector_absorption"] = (1.0 - np.exp(-csi_mu * DETECTOR_CSI_THICKNESS_CM)).astype(np.float32)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **tables)
    for key, value in tables.items():
        print(f"{key:28s} {np.asarray(value).ravel()[:3]} ... {np.asarray(value).ravel()[-1]:.4g}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
