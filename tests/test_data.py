"""The data layer: the real datasets validate, and every kind of bad input is one clear error."""
import os
import shutil
import stat
import subprocess
import sys

import pytest

from hw2 import data
from hw2.errors import DataError

MAGIC_LINE = "28.7967,16.0021,2.6449,0.3918,0.1982,27.7004,22.011,-8.2027,40.092,81.8828,g\n"


def run_check_data(env_dir, *args):
    env = {**os.environ, "HW2_DATA_DIR": str(env_dir), "HW2_NO_DOWNLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "hw2.data", *args], capture_output=True, text=True,
                          env=env, cwd=data.ROOT)


def test_real_magic_validates():
    df = data.load_magic()
    assert df.shape == (19_020, 11)
    assert list(df.columns) == data.MAGIC_COLUMNS
    assert (df["class"] == "g").sum() == 12_332 and (df["class"] == "h").sum() == 6_688
    assert df.duplicated().sum() == 115          # as NOTES.md says


def test_check_data_prints_one_line_per_dataset():
    proc = subprocess.run([sys.executable, "-m", "hw2.data", "--no-decode"], capture_output=True,
                          text=True, cwd=data.ROOT, env={**os.environ, "HW2_NO_DOWNLOAD": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and all(" ok " in ln for ln in lines)
    assert "19020 rows" in lines[0] and "9469 train" in lines[1] and "3925 val" in lines[1]


@pytest.mark.parametrize("content, problem", [
    ("", "file is empty"),
    (MAGIC_LINE * 10, "10 rows, expected 19020"),
    (MAGIC_LINE + "1.0,2.0,g\n", "line 2 has 3 columns, expected 11"),
    (MAGIC_LINE.replace("2.6449", "abc"), "non-numeric feature value 'abc'"),
    (MAGIC_LINE.replace(",g", ",x"), "unknown class label 'x'"),
])
def test_bad_magic_is_one_line_error(tmp_path, content, problem):
    (tmp_path / "magic04.data").write_text(content)
    with pytest.raises(DataError, match=problem) as e:
        data.load_magic(tmp_path / "magic04.data")
    assert str(tmp_path / "magic04.data") in str(e.value)
    proc = run_check_data(tmp_path)
    assert proc.returncode != 0
    assert proc.stdout == ""                       # nothing printed as if it were fine
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and problem in err[0]
    assert "Traceback" not in proc.stderr


def test_missing_magic_file_named(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data.load_magic(tmp_path / "nope.data")


def test_modified_magic_fails_checksum(tmp_path):
    lines = data.magic_path().read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace("28.7967", "28.7968")
    (tmp_path / "magic04.data").write_text("".join(lines))
    with pytest.raises(DataError, match="sha256"):
        data.load_magic(tmp_path / "magic04.data")


def make_imagenette(root, per_class=2):
    from PIL import Image
    for split in ("train", "val"):
        for wnid in data.IMAGENETTE_WNIDS:
            d = root / data.IMAGENETTE_DIR / split / wnid
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (20, 16), (i * 40, 80, 120)).save(d / f"img{i}.JPEG")
    return root


def test_small_imagenette_validates(tmp_path):
    root = make_imagenette(tmp_path)
    counts = data.validate_imagenette(root, expected_counts=None)
    assert counts == {"train": 20, "val": 20}
    with pytest.raises(DataError, match="20 images, expected 9469"):
        data.validate_imagenette(root)


def test_corrupt_jpeg_is_named(tmp_path):
    root = make_imagenette(tmp_path)
    bad = root / data.IMAGENETTE_DIR / "val" / data.IMAGENETTE_WNIDS[3] / "img1.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError, match="does not decode") as e:
        data.validate_imagenette(root, expected_counts=None)
    assert str(bad) in str(e.value)


def test_missing_class_folder_is_named(tmp_path):
    root = make_imagenette(tmp_path)
    shutil.rmtree(root / data.IMAGENETTE_DIR / "train" / data.IMAGENETTE_WNIDS[5])
    with pytest.raises(DataError, match=f"class folder {data.IMAGENETTE_WNIDS[5]} missing"):
        data.validate_imagenette(root, expected_counts=None)


def test_check_data_reports_broken_imagenette_in_one_line(tmp_path):
    shutil.copy(data.magic_path(), tmp_path / "magic04.data")
    root = make_imagenette(tmp_path)
    shutil.rmtree(root / data.IMAGENETTE_DIR / "val" / data.IMAGENETTE_WNIDS[0])
    proc = run_check_data(tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "class folder" in proc.stderr


def test_read_only_data_dir_works(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(data.magic_path(), ro / "magic04.data")
    os.chmod(ro / "magic04.data", stat.S_IRUSR)
    os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert len(data.load_magic(ro / "magic04.data")) == 19_020
    finally:
        os.chmod(ro, stat.S_IRWXU)


def test_lookup_order_prefers_env_dir(tmp_path, monkeypatch):
    (tmp_path / "magic04.data").write_text("x")
    monkeypatch.setenv("HW2_DATA_DIR", str(tmp_path))
    assert data.find("magic04.data") == tmp_path / "magic04.data"
    monkeypatch.delenv("HW2_DATA_DIR")
    assert data.find("magic04.data") != tmp_path / "magic04.data"


def test_no_download_when_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("HW2_NO_DOWNLOAD", "1")
    with pytest.raises(DataError, match="downloads are off"):
        data._download("https://example.invalid/x", tmp_path / "x", None)
    assert not list(tmp_path.iterdir())


def test_q3_figures_verified():
    for name in data.FIGURE_SHA256:
        assert data.figure_file(name).exists()
