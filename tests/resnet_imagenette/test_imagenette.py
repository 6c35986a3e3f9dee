"""Imagenette: sources and checks on small archives the tests write, the resized-crop
augmentation, the ImageNet-shaped families, and train.py end to end on a fake copy of the
official sizes."""

import gzip
import io
import os
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from common import cli, fileio
from common.data.augment import center_crop, random_resized_crop_flip, resized_crop_preprocess
from common.data.host_memory import HostMemory
from common.errors import ConfigError, DataError
from common.models import IMAGENET_MODELS, build_model
from common.train import steps
from common.train.optimizers import make_optimizer
from common.train.state import create_train_state
from common.train.tasks import Classification
from resnet_imagenette import data as imagenette
from tests.helpers import assert_same_model, error_line, train_main

_COUNTS = {"train": (2,) * 10, "val": (1,) * 10}


def _image(rng, mode: str, size: tuple[int, int], fmt: str) -> bytes:
  array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
  image = Image.fromarray(array).convert(mode)
  buffer = io.BytesIO()
  image.save(buffer, format=fmt)
  return buffer.getvalue()


def _members(counts=_COUNTS, seed: int = 0) -> dict[str, bytes]:
  """``imagenette2-160/{train,val}/<wnid>/<file>``: mixed sizes, a greyscale and a CMYK
  JPEG, a PNG; plus the noisy-labels CSV at the top (not an image, ignored)."""
  rng = np.random.default_rng(seed)
  out = {"imagenette2-160/noisy_imagenette.csv": b"path,noisy_labels_0\n"}
  for split in ("train", "val"):
    for k, wnid in enumerate(imagenette.WNIDS):
      for i in range(counts[split][k]):
        mode = "L" if (k, i) == (1, 0) else "CMYK" if (k, i) == (2, 0) else "RGB"
        fmt = "PNG" if (k, i) == (3, 0) else "JPEG"
        size = (160, 120 + 17 * i + k) if i % 2 == 0 else (120 + 9 * k, 160)
        out[f"imagenette2-160/{split}/{wnid}/{wnid}_{i}.{fmt}"] = _image(rng, mode, size, fmt)
  return out


def _tar_bytes(members: dict[str, bytes]) -> bytes:
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w") as tar:
    for name, content in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(content)
      tar.addfile(info, io.BytesIO(content))
  return buffer.getvalue()


def _write_tar(path: str, members: dict[str, bytes], cut_at: str | None = None) -> str:
  """Writes ``members`` as a tar (gzipped for ``*gz``), optionally cut exactly where member
  ``cut_at`` begins: every earlier member whole, no end-of-archive blocks."""
  data = _tar_bytes(members)
  if cut_at is not None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
      data = data[:tar.getmember(cut_at).offset]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(gzip.compress(data, compresslevel=1, mtime=0) if path.endswith("gz") else data)
  return path


def _write_tree(root: str, members: dict[str, bytes]) -> None:
  for name, content in members.items():
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(content)


def _load(root, tmp_path, image_size: int = 32, counts=_COUNTS):
  return imagenette.load_imagenette(str(root), image_size, validation_size=2,
                                    cache_dir=str(tmp_path / "cache"), counts=counts)


def test_archive_and_folder_give_the_same_verified_arrays(tmp_path):
  members = _members()
  _write_tar(str(tmp_path / "a" / "imagenette" / "imagenette2-160.tgz"), members)
  _write_tree(str(tmp_path / "b"), members)
  first = _load(tmp_path / "a", tmp_path)
  side = imagenette.stored_size(32)
  assert side == 37 and first.train.x.shape == (18, side, side, 3)
  assert first.test.x.shape == (10, side, side, 3) and first.test.x.dtype == np.uint8
  assert list(first.test.y) == list(range(10))  # label order = sorted wnids
  info = first.info
  assert info["image_modes"] == {"CMYK": 2, "L": 2, "RGB": 26} and info["converted_to_rgb"] == 4
  assert info["release"] == "imagenette2-160" and "substitute" not in info
  assert info["classes"][0] == "tench" and info["wnids"][0] == "n01440764"
  assert not info["cache_hit"]
  assert _load(tmp_path / "a", tmp_path).info["cache_hit"]  # decoded once
  folder = _load(tmp_path / "b", tmp_path)
  assert not folder.info["cache_hit"]  # another source, another key
  assert folder.info["sha256"] != info["sha256"] and folder.info["cache"] != info["cache"]
  np.testing.assert_array_equal(folder.test.x, first.test.x)
  np.testing.assert_array_equal(folder.train.x, first.train.x)
  larger = _load(tmp_path / "a", tmp_path, image_size=48)  # another size, another key
  assert not larger.info["cache_hit"] and larger.train.x.shape[1] == imagenette.stored_size(48)
  assert len(os.listdir(tmp_path / "cache")) == 3


def test_the_default_cache_is_a_user_folder_never_the_data_root(tmp_path, monkeypatch):
  root = tmp_path / "data"
  _write_tar(str(root / "imagenette" / "imagenette2-160.tgz"), _members())
  before = sorted(str(p) for p in root.rglob("*"))
  monkeypatch.delenv("GLONETS_CACHE_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  dataset = imagenette.load_imagenette(str(root), 32, validation_size=2, counts=_COUNTS)
  assert os.path.dirname(dataset.info["cache"]) == str(tmp_path / "xdg" / "glonets")
  assert sorted(str(p) for p in root.rglob("*")) == before


def test_the_largest_release_is_chosen(tmp_path):
  members = _members()
  root = tmp_path / "imagenette"
  _write_tar(str(root / "imagenette2-160.tgz"), members)
  _write_tar(str(root / "imagenette2-224.tar"), members)
  _write_tree(str(root), {k.replace("imagenette2-160", "imagenette2-320"): v
                          for k, v in members.items()})
  assert imagenette.find_source(str(tmp_path)).name == "imagenette2-320"
  _write_tar(str(root / "imagenette2-320.tgz"), members)
  assert imagenette.find_source(str(tmp_path)).name == "imagenette2-320.tgz"
  os.remove(root / "imagenette2-320.tgz")
  for p in sorted(root.glob("imagenette2-320/**/*"), reverse=True):
    p.unlink() if p.is_file() else p.rmdir()
  (root / "imagenette2-320").rmdir()
  source = imagenette.find_source(str(tmp_path))
  assert source.name == "imagenette2-224.tar"
  assert "substitute" in _load(tmp_path, tmp_path).info


def _damaged(members: dict[str, bytes], damage: str) -> dict[str, bytes]:
  if damage == "count":
    del members["imagenette2-160/train/n03888257/n03888257_1.JPEG"]
  elif damage == "class":
    members = {k: v for k, v in members.items() if "/n03888257/" not in k}
  elif damage == "image":
    members["imagenette2-160/train/n01440764/n01440764_0.JPEG"] = b"not an image"
  return members


_DAMAGES = {
    "count": r"holds 19 train images, expected 20 \(n03888257 1 \(expected 2\)\)",
    "class": r"missing class folder\(s\) n03888257",
    "image": r"n01440764_0\.JPEG is not a readable image",
    "truncated": r"truncated or corrupt",
}


@pytest.mark.parametrize("layout,damage", [
    *(("archive", d) for d in _DAMAGES),
    *(("folder", d) for d in _DAMAGES if d != "truncated"),  # a folder has no archive to cut
])
def test_bad_copies_are_one_clear_error_and_no_cache(tmp_path, layout, damage):
  match = _DAMAGES[damage]
  members = _damaged(_members(), damage)
  if layout == "archive":
    path = _write_tar(str(tmp_path / "imagenette" / "imagenette2-160.tgz"), members)
  else:
    _write_tree(str(tmp_path / "imagenette"), members)
    path = str(tmp_path / "imagenette" / "imagenette2-160")
  if damage == "truncated":
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(DataError, match=match) as error:
    _load(tmp_path, tmp_path)
  assert os.path.basename(path) in str(error.value)
  assert ("can also mean it was cut short" in str(error.value)) == (
      damage == "class" and layout == "archive")
  assert not os.path.exists(tmp_path / "cache") or not os.listdir(tmp_path / "cache")


def _gigapixel_jpeg() -> bytes:
  """A JPEG whose header claims 65280x65280 pixels: PIL refuses it as a decompression bomb."""
  buffer = io.BytesIO()
  Image.new("RGB", (40, 30)).save(buffer, "JPEG")
  data = bytearray(buffer.getvalue())
  start = data.index(b"\xff\xc0")  # start of frame: length, precision, height, width
  data[start + 5:start + 9] = b"\xff\x00\xff\x00"
  return bytes(data)


@pytest.mark.parametrize("damage,match", [
    ("html", r"imagenette2-160\.tgz is not a readable tar or tar\.gz archive \(ReadError: "
             r"file could not be opened successfully: - method gz"),
    ("empty", r"imagenette2-160\.tgz is not a readable tar or tar\.gz archive"),
    ("cut_early", r"imagenette2-160\.tgz is truncated or corrupt \(EOFError"),
    ("bomb", r"n01440764_0\.JPEG is not a readable image \(DecompressionBombError"),
    ("dangling", r"n01440764_0\.JPEG cannot be read \(No such file or directory\)"),
])
def test_unreadable_sources_are_one_error_line(tmp_path, damage, match):
  # Once tracebacks (a dangling link, a gigapixel header) or a five-line message (tarfile's
  # ReadError of a file that is no archive: an error page saved under the archive's name).
  members = _members()
  if damage in ("html", "empty", "cut_early"):
    path = tmp_path / "imagenette" / "imagenette2-160.tgz"
    if damage == "cut_early":  # a download cut in the gzip stream's first blocks
      _write_tar(str(path), members)
      path.write_bytes(path.read_bytes()[:100])
    else:
      path.parent.mkdir()
      path.write_bytes(b"<html>404 Not Found</html>" if damage == "html" else b"")
  else:
    if damage == "bomb":
      members["imagenette2-160/train/n01440764/n01440764_0.JPEG"] = _gigapixel_jpeg()
    _write_tree(str(tmp_path / "imagenette"), members)
    if damage == "dangling":
      image = tmp_path / "imagenette" / "imagenette2-160/train/n01440764/n01440764_0.JPEG"
      image.unlink()
      image.symlink_to(tmp_path / "gone.JPEG")
  with pytest.raises(DataError, match=match) as error:
    _load(tmp_path, tmp_path)
  assert "\n" not in str(error.value)
  assert not os.path.exists(tmp_path / "cache") or not os.listdir(tmp_path / "cache")


@pytest.mark.parametrize("name", ["imagenette2-160.tar", "imagenette2-160.tgz"])
def test_a_tar_cut_at_a_member_boundary_is_caught_by_the_counts(tmp_path, name):
  # Every member before the cut is whole, so the archive reads without a tar error: only
  # the count per class shows that the last validation image is missing.
  counts = {"train": (2,) * 10, "val": (2,) * 10}
  members = _members(counts)
  _write_tar(str(tmp_path / "imagenette" / name), members, cut_at=list(members)[-1])
  with pytest.raises(DataError, match=r"holds 19 val images, expected 20 \(n03888257 1 "
                                      r"\(expected 2\)\); the archive may be truncated"
                     ) as error:
    _load(tmp_path, tmp_path, counts=counts)
  assert name in str(error.value)
  assert not os.path.exists(tmp_path / "cache") or not os.listdir(tmp_path / "cache")


def test_an_incomplete_folder_is_named(tmp_path):
  members = {k: v for k, v in _members().items() if "/val/" not in k}
  _write_tree(str(tmp_path / "imagenette"), members)
  folder = os.path.join(tmp_path, "imagenette", "imagenette2-160")
  with pytest.raises(DataError, match=f"Imagenette folder incomplete: {folder} has no val/"):
    _load(tmp_path, tmp_path)
  _write_tar(str(tmp_path / "imagenette" / "imagenette2-160.tgz"), _members())
  assert imagenette.find_source(str(tmp_path)).name == "imagenette2-160.tgz"  # a whole copy wins


def test_no_copy_and_bad_sizes_are_reported(tmp_path):
  with pytest.raises(DataError, match="Imagenette not found"):
    _load(tmp_path, tmp_path)
  with pytest.raises(ConfigError, match="image_size"):
    _load(tmp_path, tmp_path, image_size=8)


def test_an_image_size_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
  _write_tar(str(tmp_path / "imagenette" / "imagenette2-160.tgz"), _members())
  need = imagenette.decoded_bytes(32, _COUNTS)
  assert need == 30 * 37 * 37 * 3  # 30 images stored at 37 px for a 32 px input

  def no_decode(*args, **kwargs):
    raise AssertionError("decoded although the images cannot fit")

  monkeypatch.setattr(imagenette, "read_class_folders", no_decode)
  monkeypatch.setattr(imagenette, "host_memory",
                      lambda: HostMemory(need - 1, "the cgroup memory limit in /x/memory.max"))
  with pytest.raises(ConfigError) as refused:
    _load(tmp_path, tmp_path)
  # The fix names a size whose images take at most half the memory: 22 px, stored at 25.
  assert "--image_size=32 stores every image at 37x37" in str(refused.value)
  assert "more than the cgroup memory limit in /x/memory.max (0.0 GiB)" in str(refused.value)
  assert "about 22 at most" in str(refused.value)
  assert imagenette.decoded_bytes(22, _COUNTS) <= (need - 1) // 2
  assert not os.path.exists(tmp_path / "cache")
  # More than half the memory, but not more than all of it: decoded, with a warning.
  monkeypatch.undo()
  monkeypatch.setattr(imagenette, "host_memory", lambda: HostMemory(need, "this machine's memory"))
  warnings = []
  monkeypatch.setattr(imagenette.logging, "warning", lambda msg, *a: warnings.append(msg % a))
  assert len(_load(tmp_path, tmp_path).test.x) == 10
  assert any("may run out of memory" in w for w in warnings), warnings


def test_a_machine_too_small_for_any_image_size_is_told_so():
  need = imagenette.decoded_bytes(imagenette.MIN_IMAGE_SIZE, _COUNTS)
  with pytest.raises(ConfigError) as refused:
    imagenette._check_fits_in_memory(32, _COUNTS, HostMemory(need, "this machine's memory"))
  assert "Even --image_size=16, the smallest, needs 0.00 GiB" in str(refused.value)
  assert "--image_size (about" not in str(refused.value)


def test_host_memory_is_the_lowest_limit_on_the_process_cgroup_path(tmp_path, monkeypatch):
  from common.data import host_memory as hm
  assert hm.host_memory().bytes > 0  # this machine, read for real
  physical = 64 * 2**30
  monkeypatch.setattr(hm, "_physical_bytes", lambda: physical)
  root, proc = tmp_path / "cgroup", tmp_path / "proc_self_cgroup"
  monkeypatch.setattr(hm, "_CGROUP_ROOT", str(root))
  monkeypatch.setattr(hm, "_PROC_CGROUP", str(proc))

  def limit(file, text):
    (root / file).parent.mkdir(parents=True, exist_ok=True)
    (root / file).write_text(text + "\n")

  # No cgroup file, no limits: the machine's memory.
  assert hm.host_memory() == hm.HostMemory(physical, "this machine's memory")
  # cgroup v2, a Slurm job step: the job's 1 GiB two levels above the step binds it; the
  # hierarchy's root sets none.
  proc.write_text("0::/system.slice/slurmstepd.scope/job_7/step_0\n")
  limit("system.slice/memory.max", "max")
  limit("system.slice/slurmstepd.scope/job_7/memory.max", str(2**30))
  limit("system.slice/slurmstepd.scope/job_7/step_0/memory.max", "max")
  job = root / "system.slice/slurmstepd.scope/job_7/memory.max"
  assert hm.host_memory() == hm.HostMemory(2**30, f"the cgroup memory limit in {job}")
  # A lower limit higher up wins.
  limit("system.slice/memory.max", str(2**30 - 4096))
  assert hm.host_memory().bytes == 2**30 - 4096
  # A path outside the cgroup namespace's root ("..") is not mounted here: roots only.
  proc.write_text("0::/../system.slice/slurmstepd.scope/job_7\n")
  assert hm.host_memory().bytes == physical
  # cgroup v1 (as on a hybrid host): the memory controller's line names the group; other
  # controllers' lines and a malformed line are ignored; the root's v1 "unset" is huge.
  proc.write_text("4:memory:/process_api/e20c\n3:cpuset:/\nnot a cgroup line\n0::/\n")
  limit("memory/memory.limit_in_bytes", "9223372036854771712")
  limit("memory/process_api/memory.limit_in_bytes", str(2 * 2**30))
  limit("memory/process_api/e20c/memory.limit_in_bytes", str(3 * 2**30))
  assert hm.host_memory().bytes == 2 * 2**30
  # A v1 parent without hierarchical accounting does not bind the group below it.
  limit("memory/process_api/memory.use_hierarchy", "0")
  assert hm.host_memory().bytes == 3 * 2**30
  # A container without its own cgroup namespace sees the host's path, not mounted inside
  # it: the hierarchy's root (the container's) is read.
  proc.write_text("0::/docker/0123abcd\n")
  limit("memory.max", str(5 * 2**30))
  assert hm.host_memory() == hm.HostMemory(5 * 2**30, "the cgroup memory limit in "
                                           f"{root / 'memory.max'}")
  limit("memory.max", "max")
  assert hm.host_memory().bytes == physical
  monkeypatch.setattr(hm, "_physical_bytes", lambda: None)
  proc.unlink()
  (root / "memory" / "memory.limit_in_bytes").unlink()
  assert hm.host_memory() is None


def test_random_resized_crops_are_keyed_and_evaluation_takes_the_centre():
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 37, 37, 3), dtype=np.uint8))
  a = random_resized_crop_flip(jax.random.key(1), x, 32)
  b = random_resized_crop_flip(jax.random.key(1), x, 32)
  c = random_resized_crop_flip(jax.random.key(2), x, 32)
  assert a.shape == (4, 32, 32, 3) and a.dtype == jnp.float32
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert float(a.min()) >= 0 and float(a.max()) <= 255  # bilinear stays in range
  # The whole image at its own size is the image itself, or its mirror.
  full = random_resized_crop_flip(jax.random.key(3), x.astype(jnp.float32), 37,
                                  scale=(1.0, 1.0), ratio=(1.0, 1.0))
  for got, image in zip(full, x.astype(jnp.float32), strict=True):
    assert (np.allclose(got, image, atol=1e-3) or np.allclose(got, image[:, ::-1], atol=1e-3))
  np.testing.assert_array_equal(center_crop(x, 32), x[:, 2:34, 2:34, :])
  preprocess = resized_crop_preprocess((0.5,) * 3, (0.25,) * 3, 32)
  train, evaluate = preprocess(jax.random.key(0), x, True), preprocess(None, x, False)
  assert train.shape == evaluate.shape == (4, 32, 32, 3)
  np.testing.assert_allclose(evaluate, (x[:, 2:34, 2:34].astype(np.float32) / 255 - 0.5) / 0.25,
                             rtol=1e-6)


def _imagenet_params(sizes, skips: bool = True, final_bn: bool = True,
                     carries: bool = False) -> int:
  """Parameters of an ImageNet-shaped ResNet-v2 of basic blocks, layer by layer."""
  conv = lambda cin, cout, k=3: k * k * cin * cout  # noqa: E731 - bias-free convs
  bn = lambda c: 2 * c  # noqa: E731
  widths = (64, 128, 256, 512)
  total = conv(3, 64, 7) + sizes[0] * (2 * conv(64, 64) + 2 * bn(64))
  for g in range(1, 4):
    cin, cout = widths[g - 1], widths[g]
    total += conv(cin, cout) + conv(cout, cout) + bn(cin) + bn(cout)
    total += (conv(cin, cout, 1) if skips else 0) + (conv(cin, cout, 1) if carries else 0)
    total += (sizes[g] - 1) * (2 * conv(cout, cout) + 2 * bn(cout))
  return total + (bn(512) if final_bn else 0) + 512 * 10 + 10


@pytest.mark.parametrize("name,expected", [
    ("ResNet18", 11_179_850), ("ResNet34", _imagenet_params((3, 4, 6, 3))),
    ("Plain18", _imagenet_params((2, 2, 2, 2), skips=False)),
    ("Plain34", _imagenet_params((3, 4, 6, 3), skips=False)),
    ("GloNet18", _imagenet_params((2, 2, 2, 2), skips=False, final_bn=False, carries=True)),
    ("GloNet34", _imagenet_params((3, 4, 6, 3), skips=False, final_bn=False, carries=True)),
    # The head's batch norm on the sum: ResNet18's count exactly (a norm where ResNet18
    # has its final one, carry maps where it has its projections).
    ("GloNet18+glonet_head_norm", _imagenet_params((2, 2, 2, 2), skips=False, carries=True)),
    # The scale-only norm: 512 scales, no offsets.
    ("GloNet18+glonet_head_rms",
     _imagenet_params((2, 2, 2, 2), skips=False, final_bn=False, carries=True) + 512),
])
def test_imagenet_families_have_exact_parameter_counts(name, expected):
  name, _, option = name.partition("+")
  model = build_model(name, registry=IMAGENET_MODELS, num_layers=None, out_dim=10,
                      **({option: True} if option else {}))
  x = jnp.zeros((1, 64, 64, 3))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert sum(p.size for p in jax.tree.leaves(shapes["params"])) == expected
  assert _imagenet_params((2, 2, 2, 2)) == 11_179_850  # the formula agrees with ResNet18
  blocks = 8 if name.endswith("18") else 16
  assert model.num_blocks == blocks + (0 if name.startswith("ResNet") else 1)


@pytest.mark.parametrize("family,bn", [
    pytest.param("ResNet", True, marks=pytest.mark.slow),
    pytest.param("Plain", True, marks=pytest.mark.slow),
    pytest.param("GloNet", True, marks=pytest.mark.slow),
    pytest.param("GloNet", False, marks=pytest.mark.slow)])  # a path switches BN off
def test_each_family_takes_one_training_step_at_a_tiny_size(family, bn):
  model = build_model(f"{family}18", registry=IMAGENET_MODELS, num_layers=None, out_dim=10,
                      use_batch_norm=bn)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 37, 37, 3), dtype=np.uint8))
  y = jnp.arange(8) % 10
  preprocess = resized_crop_preprocess(imagenette.MEAN, imagenette.STD, 32)
  state = create_train_state(model, make_optimizer("SGD", lambda _: 0.05),
                             preprocess(None, x[:1], False), jax.random.key(0))
  assert bool(state.batch_stats) == bn
  step = jax.jit(steps.make_train_step(Classification(10), preprocess=preprocess))
  new, metrics = step(state, (x, y), jax.random.key(1))
  assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
  assert not np.allclose(new.params["head"]["kernel"], state.params["head"]["kernel"])


@pytest.mark.slow
def test_remat_is_the_same_imagenet_model():
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  assert_same_model(*(build_model("GloNet18", registry=IMAGENET_MODELS, num_layers=None,
                                  out_dim=10, remat=r) for r in (False, True)), x)


def test_imagenet_depths_other_than_18_and_34_are_refused():
  with pytest.raises(ConfigError, match="depth 18 or 34"):
    build_model("ResNet20", registry=IMAGENET_MODELS, num_layers=None, out_dim=10)
  with pytest.raises(ConfigError, match="suffix like GloNet18"):  # a depth that exists
    build_model("GloNet", registry=IMAGENET_MODELS, num_layers=None, out_dim=10)


@pytest.mark.parametrize("family", ["ResNet", "Plain"])
@pytest.mark.parametrize("option,value,shown", [
    ("glonet_head_norm", True, "true"), ("glonet_head_rms", True, "true"),
    ("glonet_sum", "stage", "stage"), ("carry", "strided_conv", "strided_conv")])
def test_glonet_settings_are_refused_for_resnet_and_plain(family, option, value, shown):
  # Once ignored there while config.json recorded them: a run claiming a setting it lacked.
  with pytest.raises(ConfigError, match=f"--{option}={shown} applies to GloNet models only; "
                                        f"drop it for {family} .*{family} GloNet:{option}="):
    build_model(f"{family}18", registry=IMAGENET_MODELS, num_layers=None, out_dim=10,
                **{option: value})
  build_model("GloNet18", registry=IMAGENET_MODELS, num_layers=None, out_dim=10,
              **{option: value})  # where it applies


def _official_members() -> dict[str, bytes]:
  """``imagenette2-160/{train,val}/<wnid>/<file>`` at the official counts, 20x20 JPEGs."""
  rng = np.random.default_rng(0)
  members = {}
  for split, counts in (("train", imagenette.TRAIN_COUNTS), ("val", imagenette.VAL_COUNTS)):
    for k, (wnid, n) in enumerate(zip(imagenette.WNIDS, counts, strict=True)):
      base = rng.integers(0, 64, (20, 20, 3), dtype=np.uint8)
      base[..., k % 3] += 40 * (k // 3 + 1)  # learnable: the class tints one channel
      buffer = io.BytesIO()
      Image.fromarray(base).save(buffer, format="JPEG", quality=90)
      for i in range(n):
        members[f"imagenette2-160/{split}/{wnid}/{wnid}_{i}.JPEG"] = buffer.getvalue()
  return members


def _write_fake_official_copy(root: str) -> str:
  """``<root>/imagenette/imagenette2-160.tgz`` holding :func:`_official_members`."""
  _write_tar(os.path.join(root, "imagenette", "imagenette2-160.tgz"), _official_members())
  return root


@pytest.mark.slow
def test_the_smoke_variant_on_a_copy_of_the_official_sizes(tmp_path):
  root = _write_fake_official_copy(str(tmp_path / "data"))
  run = tmp_path / "run"
  proc = train_main("resnet_imagenette.train",
      "--config=resnet_imagenette/configs/default.py:smoke", "--progress=false",
      f"--data_dir={root}", f"--cache_dir={tmp_path / 'cache'}", f"--workdir={run}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert fileio.read_json(run / "status.json")["status"] == "done"
  config = fileio.read_json(run / "config.json")
  assert config["model"]["registry"] == "imagenet" and config["model"]["family"] == "GloNet"
  assert config["config"]["data"]["image_size"] == 48 and config["config"]["variant"] == "smoke"
  assert "features" not in config["config"]["model"]  # the families fix every width
  assert config["data"]["sizes"] == {"train": 1280, "val": 500, "test": 3925}
  assert config["data"]["release"] == "imagenette2-160"
  usage = fileio.read_json(run / "usage.json")
  assert usage["final"]["num_blocks"] == 9 and usage["final"]["stage_boundaries"] == [0, 3, 5, 7]
  assert os.path.getsize(run / "training_report.pdf") > 0


def _recipe_config(*args: str) -> dict:
  c = cli.parse_config("resnet_imagenette", ["train.py", *args])
  return {"recipe": c.variant, "image_size": c.data.image_size, "epochs": c.train.epochs,
          "batch_size": c.train.batch_size, "learning_rate": c.optim.learning_rate,
          "warmup_epochs": c.optim.warmup_epochs}


def test_the_gpu_recipe_reaches_every_setting_and_explicit_flags_win():
  # The image size is this experiment's own setting: it was once read before the recipe
  # was applied, and --recipe=gpu trained at 128 px instead of 192.
  assert _recipe_config() == {"recipe": "cpu", "image_size": 128, "epochs": 20,
                              "batch_size": 64, "learning_rate": 0.05, "warmup_epochs": 1.0}
  assert _recipe_config("--recipe=gpu") == {
      "recipe": "gpu", "image_size": 192, "epochs": 80, "batch_size": 128,
      "learning_rate": 0.05, "warmup_epochs": 3.0}
  given = _recipe_config("--recipe=gpu", "--image_size=160", "--epochs=5")
  assert (given["image_size"], given["epochs"], given["batch_size"]) == (160, 5, 128)
  given = _recipe_config("--config=resnet_imagenette/configs/default.py:gpu",
                         "--config.data.image_size=96", "--epochs=7")
  assert (given["recipe"], given["image_size"], given["epochs"]) == ("gpu", 96, 7)


@pytest.mark.parametrize("damage,names", [
    ("missing", "Imagenette not found"),
    ("image", "n01440764_0.JPEG is not a readable image"),
    pytest.param("boundary", "imagenette2-160.tgz holds 3,924 val images",
                 marks=pytest.mark.slow),  # writes a copy of the official size
])
def test_train_py_on_bad_data_is_one_error_line_and_leaves_nothing(tmp_path, damage, names):
  root = tmp_path / "data"
  os.makedirs(root)
  if damage == "image":
    _write_tar(str(root / "imagenette" / "imagenette2-160.tgz"),
               _damaged(_members(), "image"))
  elif damage == "boundary":
    members = _official_members()
    _write_tar(str(root / "imagenette" / "imagenette2-160.tgz"), members,
               cut_at=list(members)[-1])  # a download cut short
  proc = train_main("resnet_imagenette.train", f"--data_dir={root}",
                    f"--cache_dir={tmp_path / 'cache'}", f"--workdir={tmp_path / 'run'}",
                    "--progress=false")
  line = error_line(proc)
  assert names in line and ("--data_dir" in line or "GLONETS_DATA_DIR" in line), line
  assert not os.path.exists(tmp_path / "run")
  assert not os.path.exists(tmp_path / "cache") or not os.listdir(tmp_path / "cache")


@pytest.mark.parametrize("flags,message", [
    (("--model=ResNet18", "--glonet_head_rms"),
     "--glonet_head_rms=true applies to GloNet models only"),
    (("--validation_size=9469",), "--validation_size must be between 1 and 9468"),
    (("--train_size=9000",), "--train_size=9000 must be between 1 and the training split's "
                             "8,969 examples"),
    (("--batch_size=9000",), "--batch_size=9000 is larger than the training split (8,969"),
])
def test_train_py_refuses_bad_settings_before_reading_the_images(tmp_path, flags, message):
  root = tmp_path / "data"
  _write_tar(str(root / "imagenette" / "imagenette2-160.tgz"), _members())
  proc = train_main("resnet_imagenette.train", *flags, f"--data_dir={root}",
                    f"--cache_dir={tmp_path / 'cache'}", f"--workdir={tmp_path / 'run'}",
                    "--progress=false")
  assert message in error_line(proc)
  assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "cache")


def test_train_py_refuses_an_image_size_no_memory_holds(tmp_path):
  # 13,394 images stored at 114,286 px a side: petabytes, refused before any decode
  # (--image_size=20000 once decoded on for minutes, 1.5 GB an image, towards the kernel's
  # out-of-memory kill).
  root = tmp_path / "data"
  _write_tar(str(root / "imagenette" / "imagenette2-160.tgz"), _members())
  proc = train_main("resnet_imagenette.train", "--image_size=100000", f"--data_dir={root}",
                    f"--cache_dir={tmp_path / 'cache'}", f"--workdir={tmp_path / 'run'}",
                    "--progress=false")
  line = error_line(proc)
  assert "--image_size=100000 stores every image at 114286x114286" in line, line
  assert "Pass a smaller --image_size" in line
  assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "cache")
