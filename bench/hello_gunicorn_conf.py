"""gunicorn settings of the hello-world ceiling: the predictor's own, without its hooks.

Every plain setting (bind, workers, threads, worker class, timeouts, ...) is copied
from ``mlops_model.serving.gunicorn_conf``, so the ceiling follows the same
``PREDICTOR_*`` environment variables; its hooks, which start the model watcher,
are not, because the hello-world app has no model.
"""

from __future__ import annotations

import mlops_model.serving.gunicorn_conf as _predictor
from gunicorn.config import KNOWN_SETTINGS

for _setting in KNOWN_SETTINGS:
    _value = getattr(_predictor, _setting.name, None)
    if _value is not None and not callable(_value):
        globals()[_setting.name] = _value

proc_name = "bench-hello"
