"""longdna: long-context DNA foundation models and the data, training and evaluation code around them.

The package is usable without Snakemake::

    from longdna.models import build_model
    model = build_model("hyenadna", d_model=128, n_layer=2)

Stage file formats are documented in ``docs/formats.md``.
"""

__version__ = "0.1.0"
