"""``atst-sed package -o`` into a device or a pipe: the node stays what it is, a pipe receives the
same valid zip a file would, and ``-o -`` writes the zip to stdout with the message on stderr."""

from __future__ import annotations

import zipfile

from atst_sed.cli.main import main
from atst_sed.submission import validate_package


def _args(runs, report_pdf, meta_yaml) -> list[str]:
    return ["package", "--system", "Doe_UNI_task4_1", "--runs", str(runs[0]), "--report", str(report_pdf),
            "--meta", str(meta_yaml), "--format", "dcase2022", "-o"]


def test_package_into_a_device_or_pipe(device_output, tmp_path, runs, report_pdf, meta_yaml, capsys):
    args = _args(runs, report_pdf, meta_yaml)
    assert main([*args, str(tmp_path / "sub.zip")]) == 0
    assert main([*args, str(device_output.path)]) == 0
    received = device_output.finish()
    if device_output.kind == "named pipe":
        assert received == (tmp_path / "sub.zip").read_bytes()  # the package is deterministic
    assert f"{device_output.path}: written and valid" in capsys.readouterr().out


def test_package_to_stdout_is_only_the_zip(tmp_path, runs, report_pdf, meta_yaml, capsysbinary):
    assert main([*_args(runs, report_pdf, meta_yaml), "-"]) == 0
    out = capsysbinary.readouterr()
    (tmp_path / "piped.zip").write_bytes(out.out)
    assert zipfile.is_zipfile(tmp_path / "piped.zip")
    assert validate_package(tmp_path / "piped.zip", fmt="dcase2022").ok
    assert b"-: written and valid" in out.err
