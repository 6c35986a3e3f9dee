"""Fetching the official data files: hash-checked, nothing half-written, one line offline."""

import hashlib
import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import pytest

from common.data import download
from common.data.download import Download
from common.errors import DataError
from linear_mnist import data as mnist_data
from resnet_cifar10 import data as cifar_data
from tests.conftest import REPO, hermetic_env
from tests.helpers import error_line


def _served(tmp_path, content: bytes, name: str = "file.bin") -> str:
  path = tmp_path / "server" / name
  path.parent.mkdir(exist_ok=True)
  path.write_bytes(content)
  return path.as_uri()


def test_a_file_is_fetched_once_and_checked(tmp_path, monkeypatch):
  content = b"official bytes"
  item = Download(_served(tmp_path, content), "set/file.bin",
                  hashlib.sha256(content).hexdigest())
  root = str(tmp_path / "data")
  assert download.fetch(item, root) == os.path.join(root, "set", "file.bin")
  assert (tmp_path / "data" / "set" / "file.bin").read_bytes() == content

  def offline(*args, **kwargs):
    raise AssertionError("a file already there is not downloaded again")

  monkeypatch.setattr(urllib.request, "urlopen", offline)
  download.fetch(item, root)


def test_a_file_inside_a_zip_archive_is_kept_alone(tmp_path):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    archive.writestr("inner.zip", b"inner")
    archive.writestr("Readme.txt", b"readme")
  item = Download(_served(tmp_path, buffer.getvalue(), "outer.zip"), "s/inner.zip",
                  hashlib.sha256(b"inner").hexdigest(), member="inner.zip")
  download.fetch(item, str(tmp_path / "data"))
  assert os.listdir(tmp_path / "data" / "s") == ["inner.zip"]


def test_a_file_with_another_hash_is_refused_and_nothing_is_written(tmp_path):
  item = Download(_served(tmp_path, b"tampered"), "set/file.bin", "0" * 64)
  with pytest.raises(DataError, match=r"sent a file whose SHA-256 is [0-9a-f]{64}, not the "
                                      r"official 0{64}: nothing was written"):
    download.fetch(item, str(tmp_path / "data"))
  assert not os.path.exists(tmp_path / "data")


def test_without_internet_it_says_what_to_put_where(tmp_path, monkeypatch):
  def offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")

  monkeypatch.setattr(urllib.request, "urlopen", offline)
  item = mnist_data.DOWNLOADS[0]
  with pytest.raises(DataError) as e:
    download.fetch(item, str(tmp_path))
  assert str(e.value).startswith(f"cannot download {item.url} ([Errno -2] Name or service "
                                 f"not known); without internet, put the official file at "
                                 f"{tmp_path}/mnist/train-images-idx3-ubyte.gz by hand")
  assert item.sha256 in str(e.value) and not os.listdir(tmp_path)


def test_the_downloads_are_the_files_the_loaders_check():
  assert {d.sha256 for d in mnist_data.DOWNLOADS} == {h for _, h, _ in mnist_data.FILES.values()}
  (cifar,) = cifar_data.DOWNLOADS
  assert cifar.path == f"cifar10/{cifar_data.PYTHON_TAR}"
  assert cifar.sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


@pytest.mark.parametrize("args,message", [
    (["mnist"], "no data root: set GLONETS_DATA_DIR"),
    (["cifar100", "--data_dir=/tmp"], "unknown dataset cifar100; valid: mnist, sgemm, "
                                      "cifar10, imagenette or all."),
])
def test_the_script_refuses_bad_input_in_one_line(args, message):
  proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "download_data.py"),
                         *args], env=hermetic_env(), capture_output=True, text=True,
                        timeout=120)
  assert message in error_line(proc)
