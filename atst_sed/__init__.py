"""atst-sed: sound event detection with ATST-Frame / ATST-Clip."""

from atst_sed.version import __version__

__all__ = ["__version__"]
