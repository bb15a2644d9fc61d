"""Named published models: downloaded once into the cache from a (fake, local) remote, hash recorded
and checked, one-line failures naming the URL and where to put the file; `atst-sed models` lists them.
Nothing here reaches the internet: the remote is an HTTP server on 127.0.0.1 or an injected downloader."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
from pathlib import Path

import platformdirs
import pytest
from models_helpers import golden_checkpoint

from atst_sed import hub
from atst_sed.cli.main import main
from atst_sed.errors import AtstSedError
from atst_sed.hub import PublishedModel, RemoteFile
from atst_sed.models.checkpoint import is_model_name, load_checkpoint

MIDS = [f"/m/{i:05d}" for i in range(407)][::-1]  # deliberately not sorted: the file order is the class order


class _Remote(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def remote(tmp_path):
    """A local web server over ``tmp_path/remote``: (folder, base URL, list of requested paths)."""
    folder = tmp_path / "remote"
    folder.mkdir()
    handler = type("Handler", (_Remote,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}", handler.requests
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(hub.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def registry(remote, monkeypatch):
    """The registry with two test models served by the local remote."""
    folder, base, _ = remote
    (folder / "Stage2.ckpt").write_bytes(golden_checkpoint("atstsed_stage2").read_bytes())
    (folder / "as_strong.ckpt").write_bytes(golden_checkpoint("audiossl_as_strong_frame").read_bytes())
    (folder / "labels.txt").write_text("\n".join(MIDS) + "\n")
    (folder / "ontology.json").write_text(json.dumps([{"id": m, "name": f"Sound {i}"} for i, m in enumerate(MIDS)]))
    stage2 = hub.REGISTRY["atst-sed:stage2"]
    strong = hub.REGISTRY["atst-frame:audioset-strong"]
    models = {
        "test:stage2": PublishedModel(**{**stage2.__dict__, "name": "test:stage2",
                                         "checkpoint": RemoteFile(f"{base}/Stage2.ckpt", "Stage2.ckpt")}),
        "test:strong": PublishedModel(**{**strong.__dict__, "name": "test:strong",
                                         "checkpoint": RemoteFile(f"{base}/as_strong.ckpt", "as_strong.ckpt"),
                                         "labels": RemoteFile(f"{base}/labels.txt", "labels.txt"),
                                         "ontology": RemoteFile(f"{base}/ontology.json", "ontology.json")}),
    }
    monkeypatch.setattr(hub, "REGISTRY", {**hub.REGISTRY, **models})
    return models


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_named_model_downloads_once_then_comes_from_the_cache(registry, remote, cache):
    _, _, requests = remote
    path = hub.fetch("test:stage2")
    assert path == cache / "test_stage2" / "Stage2.ckpt" and path.is_file()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (cache / "test_stage2" / "Stage2.ckpt.sha256").read_text().split()[0] == digest
    assert hub.fetch("test:stage2") == path and hub.is_cached("test:stage2")
    loaded = load_checkpoint("test:stage2")
    assert requests == ["/Stage2.ckpt"]  # one download for three uses
    assert loaded.role == "teacher" and loaded.spec.grid.frame_seconds == 0.064 and loaded.source == "test:stage2"
    assert loaded.spec.decoding.median_filter == (6, 20, 7, 4, 7, 6, 6, 6, 6, 6)
    assert loaded.spec.meta["reported"]["psds1"] == 0.583 and loaded.spec.meta["name"] == "test:stage2"
    assert load_checkpoint("test:stage2", role="student").role == "student"


def test_the_cache_defaults_to_the_user_cache_folder(monkeypatch):
    monkeypatch.delenv(hub.CACHE_ENV, raising=False)
    assert hub.cache_dir() == Path(platformdirs.user_cache_dir("atst-sed", appauthor=False))


def test_a_cached_file_that_changed_since_its_download_is_refused(registry, cache):
    path = hub.fetch("test:stage2")
    with path.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(AtstSedError) as err:
        hub.fetch("test:stage2")
    assert "differs from the expected" in _one_line(err) and str(path) in str(err.value)


def test_a_file_put_in_the_cache_by_hand_is_used_and_its_hash_recorded(cache, monkeypatch):
    model = hub.published_model("atst-sed:stage1")
    target = hub.cached_path(model, model.checkpoint)
    target.parent.mkdir(parents=True)
    target.write_bytes(golden_checkpoint("atstsed_stage1").read_bytes())
    monkeypatch.setattr(hub, "default_downloader", None)  # any download attempt would fail loudly
    assert hub.fetch("atst-sed:stage1") == target
    assert target.with_name(target.name + ".sha256").read_text().split()[0] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert load_checkpoint("atst-sed:stage1").spec.decoding.median_filter == (7,) * 10


def test_offline_the_error_is_one_line_with_the_url_and_the_path_to_fill(registry, remote, cache):
    folder, base, _ = remote
    (folder / "Stage2.ckpt").unlink()  # the remote answers 404
    with pytest.raises(AtstSedError) as err:
        hub.fetch("test:stage2")
    message = _one_line(err)
    assert f"{base}/Stage2.ckpt" in message and str(cache / "test_stage2" / "Stage2.ckpt") in message
    assert not any(p.is_file() for p in cache.rglob("*"))  # nothing half-written is left

    def unreachable(url, handle, progress):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(AtstSedError, match="name resolution.*save it as"):
        hub.fetch("test:stage2", downloader=unreachable)


def test_a_web_page_or_a_wrong_published_hash_is_not_kept(registry, remote, cache):
    folder, base, _ = remote
    (folder / "page.html").write_text("<!DOCTYPE html><html><title>Quota exceeded</title></html>")
    model = registry["test:stage2"]
    with pytest.raises(AtstSedError, match="web page"):
        hub.fetch_file(model, RemoteFile(f"{base}/page.html", "page.ckpt"))
    with pytest.raises(AtstSedError, match="differs from the published 0000"):
        hub.fetch_file(model, RemoteFile(f"{base}/Stage2.ckpt", "Stage2.ckpt", sha256="0" * 64))
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_google_drive_links_go_through_gdown(monkeypatch):
    import gdown

    calls = []

    def fake_gdown(url, output, quiet, fuzzy, use_cookies):
        calls.append((url, fuzzy, use_cookies))
        output.write(b"checkpoint bytes")

    monkeypatch.setattr(gdown, "download", fake_gdown)
    url = hub.REGISTRY["atst-sed:stage2"].checkpoint.url
    buffer = io.BytesIO()
    hub.default_downloader(url, buffer)
    assert calls == [(url, True, False)] and buffer.getvalue() == b"checkpoint bytes"


def test_audioset_strong_classes_follow_the_label_files_line_order(registry, cache):
    loaded = load_checkpoint("test:strong")
    assert list(loaded.spec.classes) == MIDS != sorted(MIDS)
    assert loaded.spec.clip_pooling == "max" and loaded.spec.decoding.thresholds == (0.5,) * 407
    names = hub.display_names("test:strong")
    assert names[MIDS[0]] == "Sound 0" and len(names) == 407
    assert hub.display_names("atst-sed:stage2")["Speech"] == "Speech"


def test_unknown_names_and_encoder_entries_are_refused():
    with pytest.raises(AtstSedError, match="unknown model 'atst-sed:stage3'; published models: atst-sed:stage2"):
        hub.published_model("atst-sed:stage3")
    with pytest.raises(AtstSedError, match="unknown model 'atst-sed:stage3'"):
        load_checkpoint("atst-sed:stage3")
    assert is_model_name("atst-sed:stage2") and is_model_name("atst-frame:base") and not is_model_name("runs/x/best.ckpt")


def test_registry_holds_the_published_facts():
    stage2, stage1, strong = (hub.REGISTRY[n] for n in ("atst-sed:stage2", "atst-sed:stage1", "atst-frame:audioset-strong"))
    assert "1yMv05N0Nz5mSzlQ4YBb_sqOjazPbPDhw" in stage2.checkpoint.url and stage2.role == "teacher"
    assert (stage2.reported["psds1"], stage2.reported["psds2"]) == (0.583, 0.810)
    assert stage1.decoding["median_filter"] == 7 and stage2.classes == stage1.classes
    assert strong.n_classes == 407 and strong.labels.url.endswith("16423596/common_labels.txt")
    assert {m.kind for m in hub.REGISTRY.values()} == {"sed", "encoder"}
    assert all(m.checkpoint.sha256 is None for m in hub.REGISTRY.values())  # none published: recorded on first download


def test_models_verb_lists_names_classes_scores_and_cache_state(cache, capsys):
    assert main(["models", "--paths"]) == 0
    out = capsys.readouterr().out
    for text in ("atst-sed:stage2", "0.583 / 0.810", "atst-frame:audioset-strong", "407", "atst-clip:small", str(cache)):
        assert text in out, text
    assert "yes" not in out
    model = hub.published_model("atst-sed:stage2")
    hub.cached_path(model, model.checkpoint).parent.mkdir(parents=True)
    hub.cached_path(model, model.checkpoint).write_bytes(b"x")
    main(["models"])
    row = next(line for line in capsys.readouterr().out.splitlines() if "atst-sed:stage2" in line)
    assert "yes" in row
