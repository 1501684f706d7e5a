"""MedShift: class-conditional latent flow matching for sim-to-real X-ray translation."""

__version__ = "0.1.0"
