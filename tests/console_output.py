"""What a person sees from ``atst-sed`` run as a console script with its output in files (not a terminal):
the helper that runs it and the third-party chatter that must not be among it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Lines Lightning would print into a training run's output (substrings).
LIGHTNING_NOISE = (
    "litlogger",  # the "💡 Tip: For seamless cloud logging …" advertisement
    "FLOPs",  # the model-summary table ("Total FLOPs: 0")
    "LeafSpec",  # pytree deprecation warning from Lightning's internals
    "GPU available",  # accelerator banners
    "`Trainer.fit` stopped",
    "weights_only",
)


def run_redirected(args: list[str], tmp_path: Path, timeout: float = 600) -> tuple[int, str, str]:
    """``atst-sed ARGS`` with stdout and stderr in files; (exit code, stdout, stderr)."""
    exe = Path(sys.executable).with_name("atst-sed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        code = subprocess.run([str(exe), *args], stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
                              timeout=timeout).returncode
    return code, out.read_text(), err.read_text()
