"""The hand-back to the WebUI is quick: the run's file is linked into the WebUI's folder, not written
a second time (a Dreambooth checkpoint is 2 GB), and copied whole where a link cannot be made."""
import os
from pathlib import Path

import pytest

from sd_trainplan.host.exports import place


def make_run_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "run.safetensors"
    src.write_bytes(os.urandom(4096))
    return src


def test_place_links_on_one_filesystem_and_never_overwrites(tmp_path):
    src = make_run_file(tmp_path / "runs" / "db-1")
    webui = tmp_path / "models" / "Stable-diffusion"
    first = place(src, str(webui), "mydb")
    assert first == webui / "mydb.safetensors" and first.read_bytes() == src.read_bytes()
    assert os.stat(first).st_ino == os.stat(src).st_ino  # the same bytes on disk: nothing written twice
    second = place(src, str(webui), "mydb")
    assert second.name == "mydb-1.safetensors" and first.read_bytes() == src.read_bytes()


@pytest.mark.skipif(not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat("/tmp").st_dev,
                    reason="needs a second filesystem (/dev/shm beside /tmp)")
def test_place_copies_across_filesystems(tmp_path):
    import tempfile
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        src = make_run_file(Path(other) / "run")
        dest = place(src, str(tmp_path / "embeddings"), "zwx")
        assert dest.read_bytes() == src.read_bytes() and os.stat(dest).st_ino != os.stat(src).st_ino
        assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temporary file left
