"""Weights: the checkpoint zoo (``variants``), names → variants (``registry``), getting the files
(``hub``: cache, downloads, checksums, offline messages), reading them safely (``checkpoints``), placing a
model on a device in a dtype (``placement``) and ``loader.load_model``, which puts it all together.
Imports only :mod:`bgone.nn` (and errors, settings)."""
