"""``python -m napari_lightfusion.research COMMAND``: the ``lightfusion-research`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a module walk imports it
    sys.exit(main())
