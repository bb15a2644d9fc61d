"""Suite-wide test settings (offline, CPU, deterministic, headless plots) and the shared, read-only
session data: the tiny synthetic corpus, built once, and one recipes/mini run trained on it once."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from mini_settings import MINI_FAST

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _seeded_cpu():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """``atst-sed prepare synth --size tiny --seed 0`` (84 clips, DCASE 2022 layout), built once per
    session in ``<base>/corpus``. Tests only read it (copy what you change)."""
    from atst_sed.data.synth import prepare_synth

    root = tmp_path_factory.mktemp("shared") / "corpus"
    prepare_synth(root, seed=0, size="tiny", jobs=1)
    return root


@pytest.fixture(scope="session")
def mini_run(tiny_corpus) -> Path:
    """A finished recipes/mini run (every stage, :data:`MINI_FAST`, 3 of the 12 weak clips held out
    for validation) on :func:`tiny_corpus`, trained once per session into ``<base>/runs/mini`` (the
    layout of ``recipes/mini/demo.sh``). Tests only read it (copy what you change)."""
    from atst_sed.cli.main import main

    runs = tiny_corpus.parent / "runs"
    code = main(["train", str(REPO / "recipes" / "mini"), f"data.root={tiny_corpus}", "--root-dir", str(runs), *MINI_FAST,
                 "data.weak_val_fraction=0.25"])
    assert code == 0
    return runs / "mini"


@pytest.fixture
def micro(monkeypatch) -> str:
    """A 7-clip corpus size for ``prepare_synth`` (``size=micro``), for checks that build corpora of their own."""
    from atst_sed.data import synth

    monkeypatch.setitem(synth.SIZES, "micro", synth.SynthSizes(synth_train=2, weak=1, unlabeled=1, synth_val=1, test=2))
    return "micro"


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    """The real recordings beside the repository (``../shared/audio``)."""
    folder = SHARED / "audio"
    if not folder.is_dir():
        pytest.skip("../shared/audio is not present beside the repository")
    return folder


@pytest.fixture
def report_pdf(tmp_path: Path) -> Path:
    """A real one-page PDF (matplotlib), e.g. a submission's technical report."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    path = tmp_path / "report.pdf"
    with PdfPages(path) as pdf:
        fig = plt.figure(figsize=(4, 3))
        fig.text(0.1, 0.5, "ATST-SED technical report")
        pdf.savefig(fig)
        plt.close(fig)
    return path


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def bad_checkpoints(tmp_path: Path) -> dict:
    """Contents of unusable checkpoint files: ``truncated`` (half of a real ``torch.save`` file) and
    ``pickle`` (carries :class:`_Payload`, which would create ``marker`` if its code ran)."""
    import torch

    marker = tmp_path / "payload_ran"
    good, pickled = tmp_path / "good.ckpt", tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "loops": {}}, good)
    torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker)}, pickled)
    return {"truncated": good.read_bytes()[: good.stat().st_size // 2], "pickle": pickled.read_bytes(), "marker": marker}


# ------------------------------------------------------------------ outputs that are not regular files
class FifoReader:
    """A named pipe in a test folder, read to the end by a thread (as `cat fifo` would)."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.path = path
        self._data: list[bytes] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as handle:  # blocks until a writer opens the pipe
            self._data.append(handle.read())

    def release(self) -> None:
        """Open and close the pipe for writing, so that a reader nobody wrote to sees its end."""
        for _ in range(3000):
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
                break
            except OSError as err:  # ENXIO: the reader thread has not opened its end yet
                if err.errno != errno.ENXIO:
                    raise
                time.sleep(0.01)
        self._thread.join(30)

    def result(self, timeout: float = 30.0) -> bytes:
        """Everything written into the pipe; fails if nobody opened it for writing."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            if stat.S_ISFIFO(os.lstat(self.path).st_mode):  # release the reader before failing
                self.release()
            raise AssertionError(f"{self.path}: nothing was written into the named pipe")
        return self._data[0]


@pytest.fixture
def fifo_reader(tmp_path: Path):
    """``fifo_reader(name)``: a named pipe ``tmp_path/name`` with a reader thread attached."""
    return lambda name="out.fifo": FifoReader(tmp_path / name)


@pytest.fixture
def char_device(tmp_path: Path) -> Path:
    """A character device node made like /dev/null (major 1, minor 3) in ``tmp_path``; needs root."""
    path = tmp_path / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with open(path, "wb"):
            pass
    except PermissionError:
        pytest.skip("making a device node needs root")
    except OSError as err:  # e.g. a file system mounted nodev
        pytest.skip(f"cannot use a device node in {tmp_path}: {err}")
    return path


class DeviceOutput:
    """An output path that is a device or a pipe, and the check that it still is one afterwards."""

    def __init__(self, kind: str, path: Path, reader: FifoReader | None = None):
        self.kind, self.path, self._reader = kind, path, reader

    def finish(self) -> bytes:
        """Assert the node is still what it was; returns what a pipe received (b"" for the device)."""
        data = self._reader.result() if self._reader else b""
        mode = os.lstat(self.path).st_mode
        assert (stat.S_ISFIFO if self._reader else stat.S_ISCHR)(mode), f"{self.path} is no longer a {self.kind}"
        return data

    def finish_refused(self) -> None:
        """For a command that refused the path: release the pipe's reader, then check as finish()."""
        if self._reader and stat.S_ISFIFO(os.lstat(self.path).st_mode):
            self._reader.release()
        self.finish()

    @property
    def described(self) -> str:
        """How ``atst_sed.fileio.describe`` names this node in error messages."""
        return "named pipe (FIFO)" if self._reader else "character device"


@pytest.fixture(params=["character device", "named pipe"])
def device_output(request, tmp_path: Path) -> DeviceOutput:
    """Each output test runs against a /dev/null-like device node (root only) and a named pipe."""
    if request.param == "character device":
        return DeviceOutput(request.param, request.getfixturevalue("char_device"))
    reader = FifoReader(tmp_path / "out.fifo")
    return DeviceOutput(request.param, reader.path, reader)
