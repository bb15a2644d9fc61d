"""Build the offline synthetic DESED-like corpus (same as `atst-sed prepare synth`)."""

import sys

from atst_sed.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "synth", *sys.argv[1:]]))
