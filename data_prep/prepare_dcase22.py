"""Download (optional) and prepare real DESED for DCASE 2022 Task 4 (same as `atst-sed prepare dcase22`)."""

import sys

from atst_sed.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "dcase22", *sys.argv[1:]]))
