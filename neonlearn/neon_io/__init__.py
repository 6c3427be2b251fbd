"""Models trained by Intel Nervana neon v2.x, loaded into neonlearn, and back.

``load_model(path)`` reads a file that neon saved (``Model.save_params``,
``Model.serialize``, the model zoo's ``.p``/``.prm`` files) into a configured
:class:`~neonlearn.models.Model` with its weights; ``save_neon(model, path)``
writes a neonlearn network in the same format, for neon and for ``load_model``.
The estimators' ``from_neon`` classmethods
(:meth:`NeonClassifier.from_neon <neonlearn.NeonClassifier.from_neon>`, ...) give
fitted estimators from such a file.

The files are pickles; they are read by a restricted unpickler that runs no code
of the file (:mod:`._pickle`), and every field is checked before anything is
allocated.  The modules:

- ``_pickle``: reading and writing the pickle (gzip, Python 2 files);
- ``_spec``: neon's descriptions, initializers and transforms;
- ``_weights``: neon's weight layouts and the conversions;
- ``_layers``: neon layer descriptions -> neonlearn layers;
- ``_save``: neonlearn layers -> neon layer descriptions;
- ``_model``: :func:`load_model`, :func:`save_neon`, :func:`read_neon`.
"""
from ._layers import NEON_CONTAINER_TYPES, NEON_LAYER_TYPES
from ._model import load_model, read_neon, save_neon
from ._spec import NeonFormatError

__all__ = ["load_model", "save_neon", "read_neon", "NeonFormatError",
           "NEON_LAYER_TYPES", "NEON_CONTAINER_TYPES"]
