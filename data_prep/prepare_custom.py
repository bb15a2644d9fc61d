"""Turn your own labelled audio into a corpus (same as `atst-sed prepare custom`)."""

import sys

from atst_sed.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "custom", *sys.argv[1:]]))
