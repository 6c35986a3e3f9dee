"""CIFAR-10 loading: the three local formats, pickle safety, error messages and the cache.

Every test builds its own small archives (the counts are passed to ``_load_arrays``); one
test writes a full-size archive for the public loader, and one opt-in test reads the real
JPEG copy when ``GLONETS_DATA_DIR`` holds ``cifar10/``.
"""

import io
import os
import pickle
import re
import stat
import struct
import tarfile
import time
import types

import jax
import numpy as np
import pytest
from PIL import Image

from common.data import Dataset, Split, images
from common.data import cache as cache_lib
from common.errors import DataError
from resnet_cifar10 import data as cifar

N_TRAIN, N_TEST = 50, 20  # 5 and 2 images per class
# Class colours (<= 191, so that noise up to 63 stays in uint8 range).
_COLOURS = np.array([[191, 0, 0], [0, 191, 0], [0, 0, 191], [191, 191, 0], [191, 0, 191],
                     [0, 191, 191], [96, 96, 96], [191, 96, 0], [0, 96, 191], [96, 0, 191]],
                    np.uint8)


def _fake(n: int, seed: int, noise: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Balanced labels, each image its class colour plus uniform noise."""
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.arange(n) % 10).astype(np.int32)
  x = rng.integers(0, noise, (n, 32, 32, 3), dtype=np.uint8) + _COLOURS[y][:, None, None, :]
  return x, y


def _rows(x: np.ndarray) -> np.ndarray:
  """HWC images -> the official (N, 3072) rows: R plane, G plane, B plane, row-major."""
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), 3072))


class _Py2Pickler(pickle._Pickler):  # noqa: SLF001 (the pure-Python pickler is extensible)
  """Writes ``bytes`` and ``str`` as Python 2 ``str`` opcodes, as the official files hold.

  Python 3 pickles bytes under protocol 2 as calls to ``_codecs.encode``, which the safe
  unpickler rightly refuses; the official CIFAR pickles, written by Python 2, hold raw
  strings instead.
  """

  dispatch = dict(pickle._Pickler.dispatch)  # noqa: SLF001

  def _save_py2_str(self, obj):
    data = obj.encode("latin-1") if isinstance(obj, str) else obj
    if len(data) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
    else:
      self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)

  dispatch[bytes] = _save_py2_str
  dispatch[str] = _save_py2_str


def _py2_pickle(obj, old_numpy_names: bool = False) -> bytes:
  buffer = io.BytesIO()
  _Py2Pickler(buffer, protocol=2).dump(obj)
  data = buffer.getvalue()
  if old_numpy_names:  # the names numpy 1 (and the official files) write
    data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
  return data


def _python_members(train, test, classes=cifar.CLASSES) -> dict[str, bytes]:
  (xtr, ytr), (xte, yte) = train, test
  per = len(xtr) // 5
  members = {}
  for i in range(5):
    part = slice(i * per, (i + 1) * per)
    members[f"data_batch_{i + 1}"] = _py2_pickle(
        {b"batch_label": f"training batch {i + 1} of 5".encode(), b"labels": ytr[part].tolist(),
         b"data": _rows(xtr[part]), b"filenames": [b"x.png"] * per}, old_numpy_names=i % 2 == 0)
  members["test_batch"] = _py2_pickle(
      {b"batch_label": b"testing batch 1 of 1", b"labels": yte.tolist(), b"data": _rows(xte),
       b"filenames": [b"x.png"] * len(xte)})
  members["batches.meta"] = _py2_pickle(
      {b"num_cases_per_batch": per, b"label_names": [c.encode() for c in classes],
       b"num_vis": 3072})
  return {f"cifar-10-batches-py/{k}": v for k, v in members.items()}


def _binary_members(train, test, classes=cifar.CLASSES) -> dict[str, bytes]:
  def records(x, y):
    return np.concatenate([y.astype(np.uint8)[:, None], _rows(x)], axis=1).tobytes()

  (xtr, ytr), (xte, yte) = train, test
  per = len(xtr) // 5
  members = {f"data_batch_{i + 1}.bin": records(xtr[i * per:(i + 1) * per],
                                                ytr[i * per:(i + 1) * per]) for i in range(5)}
  members["test_batch.bin"] = records(xte, yte)
  members["batches.meta.txt"] = ("\n".join(classes) + "\n\n").encode()
  return {f"cifar-10-batches-bin/{k}": v for k, v in members.items()}


def _encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt, **({"quality": 75} if fmt == "JPEG" else {}))
  return buffer.getvalue()


def _folder_members(train, test, fmt="PNG", top="cifar10-png",
                    classes=cifar.CLASSES) -> dict[str, bytes]:
  members = {}
  for split, (x, y) in (("test", test), ("train", train)):  # test first, as in the copy
    for i in range(len(x)):
      members[f"{top}/{split}/{classes[y[i]]}/{i:04d}.{fmt.lower()}"] = _encode(x[i], fmt)
  return members


def _write_tar(path, members: dict[str, bytes], compresslevel: int = 1) -> str:
  """Writes ``members`` (with their folders) into a tar.gz, in the given order."""
  path = os.fspath(path)
  with tarfile.open(path, "w:gz", compresslevel=compresslevel) as tar:
    folders = set()
    for name, data in members.items():
      parts = name.split("/")
      for k in range(1, len(parts)):
        folder = "/".join(parts[:k])
        if folder not in folders:
          folders.add(folder)
          info = tarfile.TarInfo(folder)
          info.type, info.mode = tarfile.DIRTYPE, 0o755
          tar.addfile(info)
      info = tarfile.TarInfo(name)
      info.size, info.mode = len(data), 0o644
      tar.addfile(info, io.BytesIO(data))
  return path


def _write_folder(root, members: dict[str, bytes]) -> None:
  for name, data in members.items():
    path = os.path.join(root, *name.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(data)


@pytest.fixture()
def small():
  return _fake(N_TRAIN, 0), _fake(N_TEST, 1)


@pytest.fixture()
def root(tmp_path):
  folder = tmp_path / "data" / "cifar10"
  folder.mkdir(parents=True)
  return str(tmp_path / "data")


def _load(root, tmp_path, n_train=N_TRAIN, n_test=N_TEST):
  return cifar._load_arrays(root, n_train, n_test, cache_dir=str(tmp_path / "cache"))


def _assert_equal(arrays, train, test):
  np.testing.assert_array_equal(arrays["train_x"], train[0])
  np.testing.assert_array_equal(arrays["train_y"], train[1])
  np.testing.assert_array_equal(arrays["test_x"], test[0])
  np.testing.assert_array_equal(arrays["test_y"], test[1])
  assert arrays["train_x"].dtype == np.uint8 and arrays["train_y"].dtype == np.int32


# --- formats -----------------------------------------------------------------------------


def test_python_archive(small, root, tmp_path):
  train, test = small
  x = train[0].copy()
  x[0, 1, 2] = (200, 100, 50)  # a known pixel, to check CHW -> HWC independently
  train = (x, train[1])
  _write_tar(os.path.join(root, "cifar10", cifar.PYTHON_TAR), _python_members(train, test))
  arrays, info = _load(root, tmp_path)
  _assert_equal(arrays, train, test)
  rows = _rows(x)
  assert (rows[0, 0 * 1024 + 1 * 32 + 2], rows[0, 1024 + 34], rows[0, 2048 + 34]) == (200, 100, 50)
  assert tuple(arrays["train_x"][0, 1, 2]) == (200, 100, 50)
  assert info["format"].startswith("official Python pickles") and info["official_file"] is False
  assert len(info["sha256"]) == 64 and "substitute" not in info


def test_binary_archive(small, root, tmp_path):
  train, test = small
  _write_tar(os.path.join(root, "cifar10", cifar.BINARY_TAR), _binary_members(train, test))
  arrays, info = _load(root, tmp_path)
  _assert_equal(arrays, train, test)
  assert info["format"].startswith("official binary")


def test_extracted_official_folder_and_data_dir_pointing_at_it(small, root, tmp_path):
  train, test = small
  _write_folder(os.path.join(root, "cifar10"), _python_members(train, test))
  arrays, info = cifar._load_arrays(os.path.join(root, "cifar10"), N_TRAIN, N_TEST,
                                    cache_dir=str(tmp_path / "cache"))
  _assert_equal(arrays, train, test)
  assert info["source"].endswith("cifar-10-batches-py")


def test_class_folder_archive_and_folder(small, root, tmp_path):
  train, test = small
  members = _folder_members(train, test)
  tar = _write_tar(os.path.join(root, "cifar10", "cifar10-png.tar.gz"), members)
  arrays, info = _load(root, tmp_path)
  # Images come out ordered by class then file name, so compare by that order.
  for split, (x, y) in (("train", train), ("test", test)):
    order = np.lexsort((np.arange(len(y)), y))
    np.testing.assert_array_equal(arrays[f"{split}_x"], x[order])
    np.testing.assert_array_equal(arrays[f"{split}_y"], y[order])
  assert info["image_formats"] == ["PNG"] and "not verified" in info["substitute"]
  # The same tree extracted reads the same, and the class order follows the folder names.
  folder = tmp_path / "extracted"
  _write_folder(folder, members)
  out = images.read_class_folders(str(folder), classes=None, size=(32, 32))
  assert out["classes"] == cifar.CLASSES  # sorted folder names (the official order is sorted)
  np.testing.assert_array_equal(out["train"][0], arrays["train_x"])
  x, y = images.read_class_folders(tar, classes=("truck", *cifar.CLASSES[:-1]))["train"]
  np.testing.assert_array_equal(x[y == 0], arrays["train_x"][arrays["train_y"] == 9])


def test_jpeg_folder_copy_is_marked_as_substitute(root, tmp_path):
  train, test = _fake(N_TRAIN, 0, noise=4), _fake(N_TEST, 1, noise=4)
  _write_tar(os.path.join(root, "cifar10", "cifar10-jpeg.tar.gz"),
             _folder_members(train, test, fmt="JPEG", top="cifar10-jpeg"))
  arrays, info = _load(root, tmp_path)
  assert info["image_formats"] == ["JPEG"] and "JPEG" in info["substitute"]
  order = np.lexsort((np.arange(N_TRAIN), train[1]))
  diff = np.abs(arrays["train_x"].astype(int) - train[0][order].astype(int))
  assert diff.mean() < 8


# --- pickle safety -----------------------------------------------------------------------


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


def test_forbidden_global_is_refused_and_never_run(small, root, tmp_path):
  marker = tmp_path / "pwned"
  evil = pickle.dumps({b"data": _Evil(marker)}, protocol=4)
  with pytest.raises(DataError, match=r"evil\.pkl is a pickle that refers to \w+\.system"):
    images.safe_pickle_load(io.BytesIO(evil), "evil.pkl")
  members = _python_members(*small)
  members["cifar-10-batches-py/data_batch_1"] = evil
  tar = _write_tar(os.path.join(root, "cifar10", cifar.PYTHON_TAR), members)
  with pytest.raises(DataError, match="data_batch_1 is a pickle that refers to") as err:
    _load(root, tmp_path)
  assert tar in str(err.value)
  assert not marker.exists()


def test_numpy_arrays_load_under_both_numpy_module_names():
  array = np.arange(12, dtype=np.uint8).reshape(3, 4)
  for old in (False, True):
    out = images.safe_pickle_load(io.BytesIO(_py2_pickle({b"a": array}, old)), "x")
    np.testing.assert_array_equal(out[b"a"], array)
  modern = pickle.dumps(array, protocol=4)  # numpy 2 names, Python 3 bytes
  np.testing.assert_array_equal(images.safe_pickle_load(io.BytesIO(modern), "y"), array)
  with pytest.raises(DataError, match="not a readable pickle"):
    images.safe_pickle_load(io.BytesIO(modern[:-20]), "cut.pkl")
  # Python 3 writes bytes under protocol 2 as calls to _codecs.encode, which no official
  # file holds: refused like any other global.
  with pytest.raises(DataError, match="refers to _codecs.encode"):
    images.safe_pickle_load(io.BytesIO(pickle.dumps(array, protocol=2)), "py3.pkl")


# --- errors ------------------------------------------------------------------------------


def test_missing_archive_lists_what_was_looked_for(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  start = time.perf_counter()
  with pytest.raises(DataError) as err:
    cifar.load_cifar10(str(tmp_path), cache_dir=str(tmp_path / "cache"))
  assert time.perf_counter() - start < 5  # no download attempt
  message = str(err.value)
  for expected in (cifar.PYTHON_TAR, cifar.BINARY_TAR, "class folders",
                   str(tmp_path / "cifar10"), str(tmp_path / "tfds"), "GLONETS_DATA_DIR"):
    assert expected in message, expected


def test_truncated_gzip_is_named(small, root, tmp_path):
  tar = _write_tar(os.path.join(root, "cifar10", cifar.PYTHON_TAR), _python_members(*small))
  with open(tar, "rb") as f:
    data = f.read()
  for cut in (len(data) // 2, len(data) - 6):  # mid-member, and only the gzip trailer
    with open(tar, "wb") as f:
      f.write(data[:cut])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
      _load(root, tmp_path)
    assert tar in str(err.value)


@pytest.mark.parametrize("fmt", ["python", "binary", "folders"])
def test_tar_cut_at_member_boundary_reports_counts(fmt, small, root, tmp_path):
  write, name = {"python": (_python_members, cifar.PYTHON_TAR),
                 "binary": (_binary_members, cifar.BINARY_TAR),
                 "folders": (_folder_members, "cifar10-png.tar.gz")}[fmt]
  members = write(*small)
  del members[list(members)[-1] if fmt == "folders" else
              [m for m in members if "data_batch_5" in m][0]]
  _write_tar(os.path.join(root, "cifar10", name), members)
  with pytest.raises(DataError, match="may be truncated") as err:
    _load(root, tmp_path)
  assert (f"40 of {N_TRAIN}" if fmt != "folders" else f"{N_TRAIN - 1} train images") in str(
      err.value)


def test_missing_or_extra_class_folder(small, root, tmp_path):
  members = {k: v for k, v in _folder_members(*small).items() if "/train/truck/" not in k}
  _write_tar(os.path.join(root, "cifar10", "cifar10-png.tar.gz"), members)
  with pytest.raises(DataError, match=r"train/ has missing class folder\(s\) truck"):
    _load(root, tmp_path)
  renamed = _folder_members(*small, classes=("plane", *cifar.CLASSES[1:]))
  _write_tar(os.path.join(root, "cifar10", "cifar10-png.tar.gz"), renamed)
  with pytest.raises(DataError, match=r"missing class folder\(s\) airplane; unexpected class "
                                      r"folder\(s\) plane"):
    _load(root, tmp_path)


@pytest.mark.parametrize("bad", ["size", "greyscale", "rgba"])
def test_wrong_image_is_named(bad, small, root, tmp_path):
  members = _folder_members(*small)
  name = "cifar10-png/train/cat/0007.png"
  members[name] = {"size": _encode(np.zeros((31, 32, 3), np.uint8)),
                   "greyscale": _encode(np.zeros((32, 32), np.uint8)),
                   "rgba": _encode(np.zeros((32, 32, 4), np.uint8))}[bad]
  tar = _write_tar(os.path.join(root, "cifar10", "cifar10-png.tar.gz"), members)
  with pytest.raises(DataError) as err:
    _load(root, tmp_path)
  message = str(err.value)
  assert f"{tar}:cifar10-png/train/cat/0007.png" in message
  assert {"size": "32x31 pixels", "greyscale": "is a L image",
          "rgba": "is a RGBA image"}[bad] in message


def test_wrong_class_names_in_meta(small, root, tmp_path):
  names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "truck",
           "ship")
  _write_tar(os.path.join(root, "cifar10", cifar.BINARY_TAR), _binary_members(*small, names))
  with pytest.raises(DataError, match="in this order"):
    _load(root, tmp_path)


def test_unbalanced_counts_are_named(root, tmp_path):
  train, test = _fake(N_TRAIN, 0), _fake(N_TEST, 1)
  train[1][train[1] == 3] = 4  # no cat at all
  _write_tar(os.path.join(root, "cifar10", cifar.BINARY_TAR), _binary_members(train, test))
  with pytest.raises(DataError, match="cat 0, deer 10"):
    _load(root, tmp_path)


def test_choice_between_copies(small, root, tmp_path):
  folder = os.path.join(root, "cifar10")
  _write_tar(os.path.join(folder, "cifar-100-python.tar.gz"), {"x": b""})  # never CIFAR-10
  assert cifar.find_source(root) is None
  _write_tar(os.path.join(folder, "cifar10-png.tar.gz"), _folder_members(*small))
  assert cifar.find_source(root).format == "folders"
  _write_folder(os.path.join(folder, "cifar10-png"), _folder_members(*small, top="."))
  with pytest.raises(DataError, match="several class-folder copies"):
    cifar.find_source(root)
  _write_tar(os.path.join(folder, cifar.BINARY_TAR), _binary_members(*small))
  assert cifar.find_source(root).format == "binary"  # official archives come first


def test_sha256_of_tree(tmp_path):
  for name in ("a", "b"):
    _write_folder(tmp_path / name, {"x/1.bin": b"one", "y.bin": b"two"})
  digest = images.sha256_of_tree(tmp_path / "a")
  assert digest == images.sha256_of_tree(tmp_path / "b")
  os.rename(tmp_path / "b" / "y.bin", tmp_path / "b" / "z.bin")
  assert images.sha256_of_tree(tmp_path / "b") != digest


# --- cache -------------------------------------------------------------------------------


def _counting_build(calls, value=1.0):
  def build():
    calls.append(1)
    return {"a": np.full((3, 2), value, np.float32), "b": np.arange(4)}

  return build


def test_cache_second_call_is_a_hit(tmp_path):
  calls = []
  arrays, path = cache_lib.cached_arrays("k-1", _counting_build(calls), str(tmp_path))
  again, path2 = cache_lib.cached_arrays("k-1", _counting_build(calls), str(tmp_path))
  assert len(calls) == 1 and path == path2 == str(tmp_path / "k-1.npz")
  np.testing.assert_array_equal(again["a"], arrays["a"])
  assert sorted(os.listdir(tmp_path)) == ["k-1.npz"]


def test_cache_ignores_and_cleans_leftover_temp_files(tmp_path):
  # A killed build left a temporary file: valid-looking content that must never be read.
  leftover = tmp_path / "k.npz.tmp.123.abcd"
  with open(leftover, "wb") as f:
    np.savez(f, a=np.zeros(1), b=np.zeros(1))
  other_young = tmp_path / "other.npz.tmp.9.ffff"
  other_old = tmp_path / "old.npz.tmp.9.eeee"
  other_young.write_bytes(b"partial")
  other_old.write_bytes(b"partial")
  hour_ago = time.time() - 2 * 3600
  os.utime(other_old, (hour_ago, hour_ago))
  calls = []
  arrays, _ = cache_lib.cached_arrays("k", _counting_build(calls, 7.0), str(tmp_path))
  assert len(calls) == 1 and float(arrays["a"][0, 0]) == 7.0
  # This key's leftover goes with the successful write; another key's only once stale.
  assert sorted(os.listdir(tmp_path)) == ["k.npz", other_young.name]


def test_corrupt_cache_file_is_rebuilt(tmp_path):
  calls = []
  _, path = cache_lib.cached_arrays("k", _counting_build(calls), str(tmp_path))
  with open(path, "rb") as f:
    data = bytearray(f.read())
  # Flipped bits inside the array's values: the file still parses, only the CRC can tell.
  data[data.find(np.ones((3, 2), np.float32).tobytes()) + 5] ^= 0xFF
  for damaged in (bytes(data), bytes(data[:100]), b"not a zip"):
    with open(path, "wb") as f:
      f.write(damaged)
    arrays, _ = cache_lib.cached_arrays("k", _counting_build(calls), str(tmp_path))
    np.testing.assert_array_equal(arrays["a"], np.ones((3, 2), np.float32))
  assert len(calls) == 4
  cache_lib.cached_arrays("k", _counting_build(calls), str(tmp_path))
  assert len(calls) == 4


def test_a_write_stopped_midway_leaves_no_temporary_file(tmp_path, monkeypatch):
  # Ctrl-C or SIGTERM while np.savez writes gigabytes: nothing may stay behind.
  def interrupted_savez(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(cache_lib.np, "savez", interrupted_savez)
  with pytest.raises(KeyboardInterrupt):
    cache_lib.cached_arrays("k", _counting_build([]), str(tmp_path))
  assert os.listdir(tmp_path) == []


def test_a_failed_rewrite_of_a_damaged_file_is_not_called_cached(tmp_path, monkeypatch,
                                                                   caplog):
  # The damaged file still there once looked like a concurrent writer's finished file.
  (tmp_path / "k.npz").write_bytes(b"not a zip")

  def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(cache_lib.np, "savez", full_disk)
  with caplog.at_level("INFO"):
    arrays, _ = cache_lib.cached_arrays("k", _counting_build([]), str(tmp_path))
  assert arrays["a"].shape == (3, 2)
  assert "Could not write the cache file" in caplog.text and "Cached k" not in caplog.text
  assert os.listdir(tmp_path) == []  # the damaged file went: no warning about it next time


def test_unwritable_cache_still_returns_the_arrays(tmp_path):
  (tmp_path / "file").write_bytes(b"")
  calls = []
  arrays, path = cache_lib.cached_arrays("k", _counting_build(calls), str(tmp_path / "file"))
  assert len(calls) == 1 and arrays["a"].shape == (3, 2) and not os.path.exists(path)


def test_checked_cache_blames_the_source_when_built_and_the_cache_file_when_loaded(tmp_path):
  def check(arrays, where, fix):
    if arrays["a"].shape != (3, 2):
      raise DataError(f"{where}: wrong shape {arrays['a'].shape}. {fix}")

  calls = []
  with pytest.raises(DataError, match=r"^src.tar: wrong shape \(1,\). Fetch it again"):
    cache_lib.checked_cached_arrays("k", lambda: calls.append(1) or {"a": np.zeros(1)},
                                    check, "src.tar", "Fetch it again.", str(tmp_path))
  assert os.listdir(tmp_path) == []  # a build that fails its check is never cached
  arrays, path, hit = cache_lib.checked_cached_arrays(
      "k", _counting_build(calls), check, "src.tar", "Fetch it again.", str(tmp_path))
  arrays["new"] = 1  # a mutable copy
  assert (len(calls), hit) == (2, False)
  assert cache_lib.checked_cached_arrays("k", _counting_build(calls), check, "src.tar", "",
                                         str(tmp_path))[2]
  # A readable cache file of the right key but wrong content (an older writer, a bad disk).
  with open(path, "wb") as f:
    np.savez(f, a=np.zeros(1))
  with pytest.raises(DataError, match=f"^the cache file {re.escape(path)}: wrong shape .* "
                                      "Delete it; the next run rebuilds it"):
    cache_lib.checked_cached_arrays("k", _counting_build(calls), check, "src.tar", "",
                                    str(tmp_path))
  assert len(calls) == 2


def test_default_cache_dir(monkeypatch, tmp_path):
  monkeypatch.delenv("GLONETS_CACHE_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert cache_lib.default_cache_dir() == str(tmp_path / "xdg" / "glonets")
  monkeypatch.setenv("GLONETS_CACHE_DIR", str(tmp_path / "mine"))
  assert cache_lib.default_cache_dir() == str(tmp_path / "mine")
  monkeypatch.delenv("GLONETS_CACHE_DIR")
  monkeypatch.delenv("XDG_CACHE_HOME")
  assert cache_lib.default_cache_dir() == os.path.expanduser("~/.cache/glonets")
  with pytest.raises(ValueError):
    cache_lib.cache_path("../escape", str(tmp_path))


def test_cifar_second_load_is_served_from_the_cache(small, root, tmp_path, monkeypatch):
  _write_tar(os.path.join(root, "cifar10", cifar.PYTHON_TAR), _python_members(*small))
  calls = []
  read = cifar._read_python
  monkeypatch.setattr(cifar, "_read_python", lambda *a: calls.append(1) or read(*a))
  first, info1 = _load(root, tmp_path)
  second, info2 = _load(root, tmp_path)
  assert len(calls) == 1 and (info1["cache_hit"], info2["cache_hit"]) == (False, True)
  assert info2["cache"] == str(tmp_path / "cache" / f"cifar10-python-{info1['sha256']}.npz")
  _assert_equal(second, (first["train_x"], first["train_y"]), (first["test_x"], first["test_y"]))


def _snapshot(folder):
  return sorted((os.path.relpath(os.path.join(d, n), folder), os.stat(os.path.join(d, n)).st_size,
                 os.stat(os.path.join(d, n)).st_mtime_ns)
                for d, dirs, files in os.walk(folder) for n in (*dirs, *files))


def test_data_root_is_never_written(small, root, tmp_path):
  members = _folder_members(*small)
  _write_folder(os.path.join(root, "cifar10"), members)
  paths = [d for d, _, _ in os.walk(root)]
  before = _snapshot(root)
  for d in paths:  # read-only (root ignores the mode bits, hence the snapshot as well)
    os.chmod(d, stat.S_IRUSR | stat.S_IXUSR)
  try:
    for _ in range(2):
      arrays, info = _load(root, tmp_path)
      assert len(arrays["train_x"]) == N_TRAIN
  finally:
    for d in paths:
      os.chmod(d, stat.S_IRWXU)
  assert info["cache_hit"] and info["cache"].startswith(str(tmp_path / "cache"))
  assert _snapshot(root) == before


# --- the public API ----------------------------------------------------------------------


def test_public_loader_full_size(tmp_path):
  """The official counts and split sizes, on a fake python archive of the full size."""
  start = time.perf_counter()
  n_train, n_test = cifar.TRAIN_SIZE, cifar.TEST_SIZE
  data = tmp_path / "data"
  (data / "cifar10").mkdir(parents=True)
  splits = []
  for n, seed in ((n_train, 0), (n_test, 1)):
    y = np.random.default_rng(seed).permutation(np.arange(n) % 10).astype(np.int32)
    x = np.broadcast_to(_COLOURS[y][:, None, None, :], (n, 32, 32, 3)).copy()
    x[:, 0, 0, 0], x[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256  # each distinct
    splits.append((x, y))
  _write_tar(data / "cifar10" / cifar.PYTHON_TAR, _python_members(*splits))
  written = time.perf_counter()
  dataset = cifar.load_cifar10(str(data), cache_dir=str(tmp_path / "cache"))
  loaded = time.perf_counter()
  assert dataset.sizes() == {"train": 45000, "val": 5000, "test": 10000}
  assert dataset.train.x.shape[1:] == (32, 32, 3) and dataset.train.x.dtype == np.uint8
  assert dataset.train.y.dtype == np.int32
  np.testing.assert_array_equal(dataset.test.x, splits[1][0])
  info = dataset.info
  assert (info["validation_size"], info["split_seed"], info["cache_hit"]) == (5000, 0, False)
  assert info["classes"] == list(cifar.CLASSES) and info["source"].endswith(cifar.PYTHON_TAR)
  again = cifar.load_cifar10(str(data), validation_size=1000, split_seed=3,
                             cache_dir=str(tmp_path / "cache"))
  assert again.info["cache_hit"] and again.sizes()["val"] == 1000
  print(f"full-size: write {written - start:.1f}s, first load {loaded - written:.1f}s, "
        f"cached load {time.perf_counter() - loaded:.1f}s")


def test_load_for_config_and_preprocess(monkeypatch):
  x, y = _fake(N_TRAIN, 0)
  fake = Dataset(Split(x, y), Split(x, y), Split(x, y))
  seen = []
  monkeypatch.setattr(cifar, "load_cifar10", lambda *a: seen.append(a) or fake)
  config = types.SimpleNamespace(data_dir="/d", validation_size=10, split_seed=2,
                                 cache_dir=None, label_smoothing=0.0, augment=True,
                                 train_size=None, batch_size=128)
  dataset, task = cifar.load_for_config(config)
  assert dataset is fake and seen == [("/d", 10, 2, None)] and task.num_classes == 10
  config.label_smoothing, config.cache_dir = 0.1, "/c"
  assert cifar.load_for_config(config)[1].label_smoothing == 0.1
  assert seen[-1] == ("/d", 10, 2, "/c")
  out = cifar.preprocess_for(config)(jax.random.key(0), x[:4], False)
  expected = (x[:4] / 255.0 - np.asarray(cifar.MEAN)) / np.asarray(cifar.STD)
  np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
  augmented = cifar.preprocess_for(config)(jax.random.key(0), x[:64], True)
  assert not np.allclose(np.asarray(augmented), (x[:64] / 255.0 - np.asarray(cifar.MEAN))
                         / np.asarray(cifar.STD))
  config.augment = False  # --augment=false: training batches are only normalised
  plain = cifar.preprocess_for(config)(jax.random.key(0), x[:4], True)
  np.testing.assert_allclose(np.asarray(plain), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not (os.environ.get("GLONETS_DATA_DIR") and os.path.isdir(
    os.path.join(os.environ.get("GLONETS_DATA_DIR", ""), "cifar10"))),
    reason="opt-in: set GLONETS_DATA_DIR to a data root holding cifar10/")
def test_real_copy(tmp_path):
  start = time.perf_counter()
  dataset = cifar.load_cifar10(os.environ["GLONETS_DATA_DIR"], cache_dir=str(tmp_path))
  first = time.perf_counter() - start
  assert dataset.sizes() == {"train": 45000, "val": 5000, "test": 10000}
  train_counts = np.bincount(np.concatenate([dataset.train.y, dataset.val.y]), minlength=10)
  assert train_counts.tolist() == [5000] * 10
  assert np.bincount(dataset.test.y, minlength=10).tolist() == [1000] * 10
  assert not dataset.info["cache_hit"]
  start = time.perf_counter()
  again = cifar.load_cifar10(os.environ["GLONETS_DATA_DIR"], cache_dir=str(tmp_path))
  second = time.perf_counter() - start
  assert again.info["cache_hit"]
  np.testing.assert_array_equal(again.test.x, dataset.test.x)
  print(f"real copy {dataset.info['source']}: first (decode) load {first:.1f}s, cached "
        f"{second:.1f}s; {dataset.info.get('substitute', 'official')}")
