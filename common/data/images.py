"""Readers for image datasets as distributed: class folders, pickled arrays, tar archives.

* :func:`read_class_folders` decodes ``<split>/<class>/<image>`` trees (a folder, or a
  ``.tar``/``.tar.gz`` holding one, optionally under a single top-level folder) with PIL,
  and checks every image's size and mode instead of converting it (or, for photo
  datasets, brings every image to one square shape with :class:`SquareResize`).
* :func:`safe_pickle_load` reads pickles of numpy arrays (the official CIFAR batches)
  without running arbitrary pickled code: only numpy's array reconstruction is admitted.
* :func:`sha256_of_tree` is a content digest of a folder, to name caches and provenance;
  :func:`source_digest` that of an archive or a folder, an unreadable file as an error.
* :func:`read_tar_members` reads chosen members of an archive and verifies the whole gzip
  stream, so a truncated download is an error rather than a silently shorter dataset.

Every problem is one :class:`DataError` naming the file (``archive:member`` inside an
archive) and, through ``fix_hint``, how to get a good copy.
"""

import gzip
import hashlib
import io
import math
import os
import pickle
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common import fileio
from common.errors import DataError

# Errors that mean "this archive is truncated or corrupt" (gzip raises EOFError on a cut
# stream and BadGzipFile, an OSError, on a bad CRC; zlib.error on damaged deflate data).
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


def _numpy_array_globals() -> dict[tuple[str, str], Any]:
  """The globals a pickled numpy array needs, under the names old and new numpy write."""
  # The objects are taken from numpy itself, not imported by the pickled name: numpy 2
  # moved numpy.core to numpy._core and warns when the old module is imported.
  reconstruct = np.empty(0).__reduce__()[0]
  allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
  for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    allowed[(module, "_reconstruct")] = reconstruct
    allowed[(module, "ndarray")] = np.ndarray
    allowed[(module, "dtype")] = np.dtype
  return allowed


class RestrictedUnpickler(pickle.Unpickler):
  """An unpickler that resolves only numpy's array globals; anything else is refused.

  Unpickling calls whatever callables the file names, so an arbitrary pickle can run
  arbitrary code. A pickle of plain containers and numpy arrays (the official CIFAR
  batches) needs no global beyond numpy's array reconstruction, so any other global means
  a file that is not what it claims: it is refused before anything is called.
  """

  def __init__(self, file: BinaryIO, source_name: str, *, fix_hint: str = "",
               allowed: dict[tuple[str, str], Any] | None = None, **kwargs: Any):
    """Initialises the unpickler.

    Args:
      file: the binary stream.
      source_name: the file name used in messages.
      fix_hint: appended to error messages (how to get a good copy).
      allowed: ``{(module, name): object}`` that may be referenced (None: numpy arrays).
      **kwargs: passed to :class:`pickle.Unpickler` (``encoding="bytes"`` for Python 2).
    """
    super().__init__(file, **kwargs)
    self.source_name = source_name
    self.fix_hint = fix_hint
    self.allowed = _numpy_array_globals() if allowed is None else allowed

  def find_class(self, module: str, name: str) -> Any:
    try:
      return self.allowed[(module, name)]
    except KeyError:
      raise DataError(
          f"{self.source_name} is a pickle that refers to {module}.{name}, which a data "
          f"file never needs; it was not loaded (unpickling it could run arbitrary code). "
          f"{self.fix_hint}".rstrip()) from None


def safe_pickle_load(fileobj: BinaryIO, source_name: str, fix_hint: str = "") -> Any:
  """Loads a pickle of containers and numpy arrays, Python 2 strings as bytes.

  Args:
    fileobj: the binary stream.
    source_name: the file name used in messages.
    fix_hint: appended to error messages.

  Returns:
    The unpickled object (dict keys of a Python 2 pickle are ``bytes``).

  Raises:
    DataError: a forbidden global, or a truncated or malformed pickle.
  """
  try:
    # Safe to unpickle: find_class admits numpy's array globals only (ruff's S301 does not
    # flag a subclass, so no noqa is needed). encoding="bytes": Python 2 ``str`` objects
    # (dict keys, raw array buffers) stay bytes, which numpy's array reconstruction expects.
    return RestrictedUnpickler(fileobj, source_name, fix_hint=fix_hint,
                               encoding="bytes").load()
  except DataError:
    raise
  except Exception as e:  # pickle raises many types on malformed input; all mean "corrupt"
    raise DataError(f"{source_name} is not a readable pickle, probably truncated or corrupt "
                    f"({type(e).__name__}: {e}). {fix_hint}".rstrip()) from e


def sha256_of_tree(folder: str | os.PathLike) -> str:
  """A SHA-256 digest of a folder's files: their sorted relative paths and contents.

  Args:
    folder: the folder (symbolic links are followed; empty folders do not count).

  Returns:
    The hex digest; equal for equal trees wherever they are.
  """
  folder = os.fspath(folder)
  files = []
  for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
    dirnames.sort()
    for name in filenames:
      path = os.path.join(dirpath, name)
      files.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
  digest = hashlib.sha256()
  for rel, path in sorted(files):
    file_digest = hashlib.sha256()
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        file_digest.update(chunk)
    # Path and content digest per entry, NUL-separated: no two trees share a byte stream.
    digest.update(rel.encode("utf-8") + b"\0" + file_digest.digest())
  return digest.hexdigest()


def source_digest(path: str, is_archive: bool, fix_hint: str = "") -> str:
  """The SHA-256 of a data source: an archive's bytes, or a folder's :func:`sha256_of_tree`.

  Raises:
    DataError: a file of the source cannot be read (a dangling link, no permission).
  """
  try:
    return fileio.sha256(path) if is_archive else sha256_of_tree(path)
  except OSError as e:
    raise DataError(f"{e.filename or path} cannot be read ({e.strerror or e}); fix or "
                    f"remove it, or make it readable. {fix_hint}".rstrip()) from e


def _one_line(e: BaseException) -> str:
  """An exception as one line: some (tarfile's ReadError) span several."""
  return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _open_tar(path: str, fix_hint: str) -> tarfile.TarFile:
  """Opens a (gzipped) tar; a file that is none (an error page saved under the archive's
  name, an empty download) is one error saying so."""
  try:
    return tarfile.open(path, mode="r:*")
  except (tarfile.ReadError, tarfile.CompressionError) as e:
    raise DataError(f"{path} is not a readable tar or tar.gz archive ({_one_line(e)}); "
                    f"download it again. {fix_hint}".rstrip()) from e
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # cut or damaged in its first blocks
    raise DataError(f"{path} is truncated or corrupt ({_one_line(e)}); download it again. "
                    f"{fix_hint}".rstrip()) from e
  except OSError as e:
    raise DataError(f"{path} cannot be read ({e.strerror or e}); make it readable. "
                    f"{fix_hint}".rstrip()) from e


def _member_name(name: str) -> str:
  """An archive member's name without a leading ``./``."""
  name = posixpath.normpath(name)
  return "" if name == "." else name.removeprefix("./")


def iter_tar_files(path: str, fix_hint: str = "") -> Iterator[tuple[str, bytes]]:
  """Yields ``(member name, content)`` for every regular file of a (gzipped) tar.

  Reads sequentially, then reads the compressed stream to its end, so a truncated or
  corrupt gzip file is an error even when every tar member before the cut was intact.

  Args:
    path: the ``.tar``, ``.tar.gz`` or ``.tgz`` file.
    fix_hint: appended to error messages.

  Yields:
    Member names (no leading ``./``) and contents, in archive order.

  Raises:
    DataError: an unreadable, truncated or corrupt archive.
  """
  tar = _open_tar(path, fix_hint)
  try:
    with tar:
      for member in tar:
        if member.isfile():
          handle = tar.extractfile(member)
          yield _member_name(member.name), handle.read() if handle else b""
      # tarfile stops at the end-of-archive blocks; reading the rest of the stream makes
      # gzip check its length and CRC, which catches a cut or damaged download.
      while tar.fileobj.read(1 << 20):
        pass
  except _ARCHIVE_ERRORS as e:
    raise DataError(f"{path} is truncated or corrupt ({_one_line(e)}); "
                    f"download it again. {fix_hint}".rstrip()) from e


def read_tar_members(path: str, names: Iterable[str], fix_hint: str = "") -> dict[str, bytes]:
  """The contents of the members ``names`` of a tar; absent ones are simply missing.

  Args:
    path: the archive.
    names: member paths (no leading ``./``).
    fix_hint: appended to error messages.

  Returns:
    ``{name: content}`` for the requested members present in the archive.

  Raises:
    DataError: an unreadable, truncated or corrupt archive.
  """
  wanted = set(names)
  return {name: data for name, data in iter_tar_files(path, fix_hint) if name in wanted}


def _split_relpath(parts: tuple[str, ...], splits: tuple[str, ...]) -> tuple[str, ...] | None:
  """``(top, split, class, file)`` parts of an image path, or None when not under a split."""
  if len(parts) >= 2 and parts[0] in splits:
    return ("", *parts)
  if len(parts) >= 3 and parts[1] in splits:
    return parts
  return None


def _decode(data: bytes, name: str, size: tuple[int, int] | None,
            modes: tuple[str, ...], fix_hint: str,
            transform: Callable[[Image.Image], Image.Image] | None = None
            ) -> tuple[np.ndarray, str, str]:
  """Decodes one image into ``(height, width, 3)`` uint8; returns it, its format and mode."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      if transform is not None and hasattr(transform, "draft_size"):
        # JPEG: decode at the smallest DCT scale that still covers the target (much faster
        # for large photos; the result is then resized exactly by the transform).
        image.draft("RGB", transform.draft_size(image.size))
      image.load()
      fmt, mode, (width, height) = image.format or "?", image.mode, image.size
      # A wrong size or mode is an error, never converted: a copy with such images was
      # resized or re-encoded, so it is not the dataset the results would be reported on.
      if mode not in modes:
        raise DataError(f"{name} is a {mode} image; every image must be "
                        f"{' or '.join(modes)}. {fix_hint}".rstrip())
      if size is not None and (height, width) != tuple(size):
        raise DataError(f"{name} is {width}x{height} pixels (width x height); every image "
                        f"must be {size[1]}x{size[0]}. {fix_hint}".rstrip())
      rgb = image if image.mode == "RGB" else image.convert("RGB")
      array = np.asarray(rgb if transform is None else transform(rgb), dtype=np.uint8)
  except DataError:
    raise
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
          Image.DecompressionBombError) as e:  # the last: a header claiming gigapixels
    raise DataError(f"{name} is not a readable image ({_one_line(e)}). "
                    f"{fix_hint}".rstrip()) from e
  return array, fmt, mode


class SquareResize:
  """Resizes the shorter side to ``size`` (bilinear, antialiased) and keeps the centre
  ``size x size`` square: one stored shape for photos of any size and aspect ratio.

  Attributes:
    size: the side of the square output.
  """

  def __init__(self, size: int):
    if size < 1:
      raise ValueError(f"size must be >= 1; got {size}")
    self.size = int(size)

  def draft_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
    """The smallest ``(width, height)`` whose shorter side still covers ``size``."""
    width, height = image_size
    factor = self.size / min(width, height)
    return (math.ceil(width * factor), math.ceil(height * factor))

  def __call__(self, image: Image.Image) -> Image.Image:
    return ImageOps.fit(image, (self.size, self.size), Image.Resampling.BILINEAR)


def _tree_files(root: str, splits: tuple[str, ...]) -> tuple[dict, Iterator[tuple]]:
  """Class folders per split, and a lazy stream of a folder's images (see _tar_images)."""
  base = root
  if not any(os.path.isdir(os.path.join(root, s)) for s in splits):
    subs = [d for d in sorted(os.listdir(root))
            if any(os.path.isdir(os.path.join(root, d, s)) for s in splits)]
    if len(subs) != 1:
      raise DataError(f"{root} holds no {'/'.join(splits)} folders (directly or in one "
                      f"subfolder); found {len(subs)} candidate subfolders.")
    base = os.path.join(root, subs[0])
  folders: dict[str, set[str]] = {}
  entries = []
  for split in splits:
    split_dir = os.path.join(base, split)
    folders[split] = set()
    if not os.path.isdir(split_dir):
      continue
    for cls in sorted(os.listdir(split_dir)):
      cls_dir = os.path.join(split_dir, cls)
      if cls.startswith("."):
        continue
      if not os.path.isdir(cls_dir):
        raise DataError(f"{cls_dir} is a file directly in {split_dir}; images belong in "
                        f"class folders {split}/<class>/.")
      folders[split].add(cls)
      entries += [(split, cls, f) for f in sorted(os.listdir(cls_dir)) if not f.startswith(".")]

  def stream():
    for split, cls, fname in entries:
      path = os.path.join(base, split, cls, fname)
      if os.path.isdir(path):
        raise DataError(f"{path} is a folder inside a class folder; images must sit directly "
                        f"in {split}/<class>/.")
      try:
        with open(path, "rb") as f:
          content = f.read()
      except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror or e}); fix or remove it, or "
                        f"make it readable.") from e
      yield path, split, cls, fname, content

  return folders, stream()


def read_class_folders(
    root_or_tar: str, splits: tuple[str, ...] = ("train", "test"),
    classes: tuple[str, ...] | None = None, size: tuple[int, int] | None = None, *,
    modes: tuple[str, ...] = ("RGB",), fix_hint: str = "",
    transform: Callable[[Image.Image], Image.Image] | None = None) -> dict[str, Any]:
  """Decodes ``<split>/<class>/<image>`` trees into uint8 arrays and integer labels.

  The tree may sit directly in the folder or archive, or under one top-level folder
  (``cifar10-jpeg/train/cat/0001.jpg``). Hidden files (``.DS_Store``, ``._*``) are
  skipped; anything else in a class folder must be an image. Within a split, images are
  ordered by class, then by file name, so a folder and its archive give equal arrays.

  Args:
    root_or_tar: a folder, or a ``.tar``/``.tar.gz``/``.tgz`` archive.
    splits: the split folders to read (others are ignored).
    classes: the expected class folder names, in label order; every split must hold
      exactly these. None: the sorted folder names of the first split (every split must
      hold the same).
    size: required ``(height, width)`` of every image as stored; None: any (but one per
      split after ``transform``).
    modes: PIL modes accepted; non-RGB ones among them are converted to RGB.
    fix_hint: appended to error messages (how to get a good copy).
    transform: applied to every decoded RGB image (e.g. a resize to one size); when it
      has a ``draft_size(size) -> size`` method, JPEGs are decoded at a reduced scale
      that still covers that size.

  Returns:
    ``{split: (images uint8 (N, H, W, 3), labels int32 (N,))}`` for each split, plus
    ``"classes"`` (tuple of names, label order), ``"formats"`` (sorted tuple of the PIL
    image formats found, e.g. ``("JPEG",)``) and ``"modes"`` (``{PIL mode: count}`` of
    the images as stored, before conversion to RGB).

  Raises:
    DataError: a missing or extra class folder, an unreadable image, a wrong size or
      mode, or an unreadable archive; the message names the file.
  """
  is_archive = os.path.isfile(root_or_tar)
  if is_archive:
    folders: dict[str, set[str]] = {s: set() for s in splits}
    stream = _tar_images(root_or_tar, splits, folders, fix_hint)
  else:
    folders, stream = _tree_files(root_or_tar, splits)
  decoded: dict[str, list[tuple[str, str, np.ndarray]]] = {s: [] for s in splits}
  formats = set()
  mode_counts: dict[str, int] = {}
  for name, split, cls, fname, data in stream:
    array, fmt, mode = _decode(data, name, size, modes, fix_hint, transform)
    decoded[split].append((cls, fname, array))
    formats.add(fmt)
    mode_counts[mode] = mode_counts.get(mode, 0) + 1
  if classes is None:
    classes = tuple(sorted(folders[splits[0]]))
  where = root_or_tar
  for split in splits:
    missing = [c for c in classes if c not in folders[split]]
    extra = sorted(folders[split] - set(classes))
    if missing or extra:
      problems = ([f"missing class folder(s) {', '.join(missing)}"] if missing else []) + (
          [f"unexpected class folder(s) {', '.join(extra)}"] if extra else [])
      # An uncompressed tar cut exactly between members reads without error: the lost
      # tail is whole class folders (of the last split) as often as a short count.
      cut = (" (in an archive this can also mean it was cut short)"
             if missing and is_archive else "")
      raise DataError(f"{where}: {split}/ has {'; '.join(problems)}{cut}; expected exactly "
                      f"{', '.join(classes)}. {fix_hint}".rstrip())
  index = {c: i for i, c in enumerate(classes)}
  out: dict[str, Any] = {"classes": tuple(classes), "formats": tuple(sorted(formats)),
                         "modes": dict(sorted(mode_counts.items()))}
  for split in splits:
    items = sorted(decoded[split], key=lambda item: (index[item[0]], item[1]))
    shapes = {a.shape for _, _, a in items}
    if len(shapes) > 1:
      raise DataError(f"{where}: {split}/ holds images of several sizes "
                      f"({', '.join(str(s[:2]) for s in sorted(shapes)[:4])}); this reader "
                      f"needs one size. {fix_hint}".rstrip())
    h, w = (size if size is not None else next(iter(shapes), (0, 0))[:2])
    images = (np.stack([a for _, _, a in items]) if items
              else np.zeros((0, h, w, 3), np.uint8))
    labels = np.asarray([index[c] for c, _, _ in items], np.int32)
    out[split] = (images, labels)
  return out


def _tar_images(path: str, splits: tuple[str, ...], folders: dict[str, set[str]],
                fix_hint: str) -> Iterator[tuple[str, str, str, str, bytes]]:
  """Streams ``(name for messages, split, class, file name, bytes)`` of an archive's images.

  The class folders seen are recorded in ``folders``.
  Class folders are recorded from both directory entries and file paths, so an empty
  class folder still counts as present (its emptiness shows in the counts).
  """
  tops = set()
  try:
    with _open_tar(path, fix_hint) as tar:
      for member in tar:
        name = _member_name(member.name)
        parts = tuple(name.split("/")) if name else ()
        if any(p.startswith(".") for p in parts):
          continue
        rel = _split_relpath(parts, splits)
        if rel is None:
          continue  # outside the splits (a README, another split): not ours to read
        top, split, rest = rel[0], rel[1], rel[2:]
        tops.add(top)
        if len(tops) > 1:
          raise DataError(f"{path} holds {'/'.join(splits)} trees under several top-level "
                          f"folders ({', '.join(sorted(t or '.' for t in tops))}); keep "
                          f"one. {fix_hint}".rstrip())
        if member.isdir():
          if len(rest) == 1:
            folders[split].add(rest[0])
          continue
        if not member.isfile():
          continue
        if len(rest) != 2:
          raise DataError(f"{path}:{name} is not directly in a class folder "
                          f"{split}/<class>/. {fix_hint}".rstrip())
        folders[split].add(rest[0])
        handle = tar.extractfile(member)
        yield f"{path}:{name}", split, rest[0], rest[1], handle.read() if handle else b""
      while tar.fileobj.read(1 << 20):  # verify the gzip length and CRC (see iter_tar_files)
        pass
  except _ARCHIVE_ERRORS as e:
    raise DataError(f"{path} is truncated or corrupt ({_one_line(e)}); "
                    f"download it again. {fix_hint}".rstrip()) from e
