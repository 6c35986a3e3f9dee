r"""Downloads the official data files an experiment reads, each checked against its SHA-256.

  python scripts/download_data.py mnist                 # into $GLONETS_DATA_DIR
  python scripts/download_data.py all --data_dir=~/data   # mnist sgemm cifar10 imagenette

Files already there with the right hash are kept. Without internet it fails within
seconds, with one line naming the file to put there by hand and its hash.
"""

import importlib
import os
import sys

if __package__ in (None, ""):  # `python scripts/download_data.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags, logging  # noqa: E402

from common.cli import run_main  # noqa: E402
from common.data import download  # noqa: E402
from common.errors import ConfigError  # noqa: E402
from common.run_config import DATA_DIR_ENV  # noqa: E402

# dataset -> the data module that lists its files (DOWNLOADS).
DATASETS = {"mnist": "linear_mnist.data", "sgemm": "resnet_sgemm.data",
            "cifar10": "resnet_cifar10.data", "imagenette": "resnet_imagenette.data"}

_DATA_DIR = flags.DEFINE_string("data_dir", None, f"Data root (default: ${DATA_DIR_ENV}).")


def main(argv: list[str]) -> None:
  names = argv[1:] or ["mnist"]
  if names == ["all"]:
    names = list(DATASETS)
  unknown = [n for n in names if n not in DATASETS]
  if unknown:
    raise ConfigError(f"unknown dataset {', '.join(unknown)}; valid: "
                      f"{', '.join(DATASETS)} or all.")
  root = _DATA_DIR.value or os.environ.get(DATA_DIR_ENV)
  if not root:
    raise ConfigError(f"no data root: set {DATA_DIR_ENV} (e.g. export {DATA_DIR_ENV}="
                      f"$HOME/glonets_data) or pass --data_dir.")
  root = os.path.expanduser(root)
  for name in names:
    for item in importlib.import_module(DATASETS[name]).DOWNLOADS:
      print(download.fetch(item, root))
  logging.info("Data root %s holds %s.", root, ", ".join(names))


if __name__ == "__main__":
  run_main(main, positional=True)
