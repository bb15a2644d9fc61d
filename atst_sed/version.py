"""The atst-sed version (written into checkpoints and run manifests)."""

__version__ = "0.1.0"
