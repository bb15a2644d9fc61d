"""atst-sed: sound event detection with ATST-Frame / ATST-Clip."""

__version__ = "0.1.0"
