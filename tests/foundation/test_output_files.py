"""Every writer of atst-sed goes through ``atst_sed.fileio``: regular files are replaced atomically,
devices and named pipes are written in place (and stay what they are), symlinks survive, and
``-`` is ``/dev/stdout``."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from atst_sed.audio import write_wav
from atst_sed.inference.embeddings import write_npz
from atst_sed.config import write_yaml
from atst_sed.errors import InputError
from atst_sed.events import write_events_csv, write_events_tsv
from atst_sed.fileio import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_output_folder,
    copy_file,
    open_output,
)
from atst_sed.inference.plot import PlotInput, plot_detection
from atst_sed.inference.plot_html import write_detection_html
from atst_sed.models.checkpoint import save_checkpoint
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig

REPO = Path(__file__).resolve().parents[2]
EVENTS = pd.DataFrame({"filename": ["a.wav", "a.wav"], "onset": [0.5, 2.0], "offset": [1.5, 3.25],
                       "event_label": ["Dog", "Speech"], "score": [0.9, 0.7]})
WAVE = (0.1 * np.sin(np.arange(1600) / 5.0)).astype(np.float64)
CLASSES = ["Dog", "Speech"]


def _zip(path: Path) -> None:
    with open_output(path) as handle, zipfile.ZipFile(handle, "w") as archive:
        archive.writestr("task4/readme.txt", "hello")


def _copy(path: Path) -> None:
    source = path.parent / "source.bin"
    source.write_bytes(b"\x00\x01copied")
    copy_file(source, path)


def _name_based(path: Path) -> None:
    with atomic_path(path) as name:
        Path(name).write_bytes(b"by name")


def _equals(expected: bytes) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        assert data == expected

    return check


def _json(data: bytes) -> None:
    assert json.loads(data) == {"psds1": 0.5}


def _yaml(data: bytes) -> None:
    assert yaml.safe_load(data) == {"seed": 42, "data": {"root": "x"}}


def _tsv(data: bytes) -> None:
    assert pd.read_csv(io.BytesIO(data), sep="\t")["event_label"].tolist() == ["Dog", "Speech"]


def _csv(data: bytes) -> None:
    assert pd.read_csv(io.BytesIO(data))["offset"].tolist() == [1.5, 3.25]


def _png(data: bytes) -> None:
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def _html(data: bytes) -> None:
    assert data.startswith(b"<!DOCTYPE html>") and data.rstrip().endswith(b"</html>")


def _npz(data: bytes) -> None:
    np.testing.assert_array_equal(np.load(io.BytesIO(data))["embeddings"], np.eye(3))


def _checkpoint(data: bytes) -> None:
    assert torch.load(io.BytesIO(data), weights_only=True)["kind"] == "encoder"


def _wav(data: bytes) -> None:
    np.testing.assert_allclose(sf.read(io.BytesIO(data))[0], WAVE, atol=1 / 32768)


def _zipped(data: bytes) -> None:
    assert zipfile.ZipFile(io.BytesIO(data)).read("task4/readme.txt") == b"hello"


# writer → (write to a path, check the bytes a reader got)
WRITERS: dict[str, tuple[Callable[[Path], object], Callable[[bytes], None]]] = {
    "text (json)": (lambda p: atomic_write_text(p, '{"psds1": 0.5}\n'), _json),
    "bytes": (lambda p: atomic_write_bytes(p, b"\x89raw"), _equals(b"\x89raw")),
    "yaml (config.write_yaml)": (lambda p: write_yaml(p, {"seed": 42, "data": {"root": "x"}}), _yaml),
    "events tsv": (lambda p: write_events_tsv(p, EVENTS.drop(columns="score")), _tsv),
    "detect csv": (lambda p: write_events_csv(p, EVENTS), _csv),
    "png (detect --plot)": (lambda p: plot_detection(p, PlotInput(WAVE.astype(np.float32), np.full((4, 2), 0.5, np.float32),
                                                                  EVENTS.iloc[:0], CLASSES, 0.04)), _png),
    "html (detect --plot-format html)": (
        lambda p: write_detection_html(p, PlotInput(WAVE.astype(np.float32), np.full((4, 2), 0.5, np.float32), EVENTS,
                                                    CLASSES, 0.04)), _html),
    "npz (embed)": (lambda p: write_npz(p, {"embeddings": np.eye(3, dtype=np.float32)}), _npz),
    "checkpoint (torch.save)": (lambda p: save_checkpoint(p, ATSTEncoder(EncoderConfig.named("frame_tiny"))), _checkpoint),
    "wav (corpus audio)": (lambda p: write_wav(p, WAVE), _wav),
    "zip (package)": (_zip, _zipped),
    "copy": (_copy, _equals(b"\x00\x01copied")),
    "name-based writer (atomic_path)": (_name_based, _equals(b"by name")),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_streams_into_a_named_pipe_and_leaves_it_a_pipe(writer, fifo_reader, tmp_path):
    write, check = WRITERS[writer]
    reader = fifo_reader("out.fifo")
    write(reader.path)
    check(reader.result())
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "source.bin") == ["out.fifo"]  # no temporary file


@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_writes_a_symlinks_target_and_keeps_the_link(writer, tmp_path):
    write, check = WRITERS[writer]
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "real.out"
    target.write_bytes(b"old")
    link = tmp_path / "link.out"
    link.symlink_to(target)
    write(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    check(target.read_bytes())
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["real.out"]  # temporary file renamed away


@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_leaves_a_character_device_a_device(writer, char_device, tmp_path):
    write, _ = WRITERS[writer]
    write(char_device)
    assert stat.S_ISCHR(os.lstat(char_device).st_mode)
    assert os.lstat(char_device).st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "source.bin") == ["null"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "new" / "made.json")
    atomic_write_text(link, "{}")
    assert link.is_symlink() and (tmp_path / "new" / "made.json").read_text() == "{}"


def test_an_error_while_writing_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("old\n")
    with pytest.raises(ZeroDivisionError), open_output(path) as handle:
        handle.write(b"half a file")
        1 / 0
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["events.csv"]


def test_a_replaced_file_keeps_its_permissions_and_a_new_one_follows_the_umask(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_text(path, '{"a": 1}')
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.json"
    atomic_write_text(fresh, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_a_folder_or_socket_as_output_file_is_refused_in_one_line(tmp_path):
    import socket

    with pytest.raises(InputError, match="is a folder; expected a file name"):
        atomic_write_text(tmp_path, "x")
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        with pytest.raises(InputError, match="is a socket"):
            atomic_write_text(sock_path, "x")
    finally:
        sock.close()


@pytest.mark.parametrize("make, what", [
    (lambda d: d / "plain.txt", "this is a regular file"),
    (lambda d: d / "pipe", "this is a named pipe"),
    (lambda d: d / "plain.txt" / "below", "is a regular file"),
])
def test_a_folder_option_refuses_files_pipes_and_paths_through_them(tmp_path, make, what):
    (tmp_path / "plain.txt").write_text("x")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InputError, match=f"--scores-dir needs a folder; .*{what}"):
        check_output_folder(make(tmp_path), "--scores-dir")
    for name in ("-", "/dev/stdout"):
        with pytest.raises(InputError, match="--plot needs a folder, not standard output"):
            check_output_folder(name, "--plot")
    assert check_output_folder(tmp_path / "new" / "scores", "--scores-dir") == tmp_path / "new" / "scores"


def test_a_folder_option_refuses_a_character_device(char_device):
    with pytest.raises(InputError, match="needs a folder; this is a character device"):
        check_output_folder(char_device, "--plots")
    assert stat.S_ISCHR(os.lstat(char_device).st_mode)


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
@pytest.mark.parametrize("stdout_is", ["file", "pipe"])
def test_dash_and_dev_stdout_append_to_standard_output_whatever_it_is(name, stdout_is, tmp_path):
    """Printed text comes first, the output after it; a redirected stdout file is appended to, not
    replaced (renaming over /dev/stdout would replace the symlink in /dev)."""
    code = ("import sys; from atst_sed.fileio import atomic_write_text; print('before', flush=False); "
            f"atomic_write_text({name!r}, 'output\\n'); print('after')")
    was_link = os.path.islink("/dev/stdout")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if stdout_is == "file":
        out = tmp_path / "stdout.txt"
        with open(out, "wb") as handle:
            subprocess.run([sys.executable, "-c", code], stdout=handle, env=env, check=True)
        got = out.read_text()
    else:
        got = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True, text=True).stdout
    assert got == "before\noutput\nafter\n"
    assert os.path.islink("/dev/stdout") == was_link


@pytest.mark.parametrize("argv, option", [
    (["prepare", "synth", "--size", "tiny", "--root"], "--root"),
    (["train", str(REPO / "recipes" / "mini"), "--root-dir"], "--root-dir"),
    (["train", str(REPO / "recipes" / "mini"), "--run-dir"], "--run-dir"),
    (["pretrain", "mini", "-o"], "-o/--output-dir"),
])
def test_run_and_corpus_folders_refuse_a_device_or_pipe(argv, option, device_output, capsys):
    from atst_sed.cli.main import main

    assert main([*argv, str(device_output.path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(f"{device_output.path}: {option} needs a folder; this is a {device_output.described}"), err
    device_output.finish_refused()
