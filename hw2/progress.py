"""Progress bars that show on a terminal and stay silent in CI, logs and notebooks."""
import os
import sys

from tqdm.auto import tqdm


def quiet() -> bool:
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def bar(iterable=None, **kwargs):
    kwargs.setdefault("disable", quiet())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
