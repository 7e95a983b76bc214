"""Model artifacts on disk: the only module of :mod:`ml` that does I/O.

An artifact is a directory::

    <directory>/
        metadata.json   model name, version, training window, metrics, params, library versions
        model.json      CLVModel parameters (BG/NBD + Gamma-Gamma) -- or, for xgboost models:
        model.joblib    the fitted wrapper (classifier/regressor + calibrator)
        booster.json    the xgboost booster in xgboost's portable JSON format

Writes are atomic: files go to a sibling temporary directory which then replaces
``<directory>``, so a reader never sees a half-written artifact.  ``joblib``
files execute code when loaded -- only load artifacts this project wrote.

Version strings look like ``clv_bgnbd_gg-2025-12-31-3f9a1c2b7d`` (model name,
as-of date, first 10 hex digits of the SHA-256 of the canonical JSON of what
determines the model), so re-training on the same data and settings gives the
same version.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from ml.clv import CLVModel
from ml.features import DateLike

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Plain-JSON form of metrics/params: NaN/inf -> None, numpy/pandas scalars -> Python, dates -> ISO."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Series):
        return [to_jsonable(v) for v in list(value)]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    return str(value)


def canonical_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def make_model_version(model_name: str, as_of: DateLike, payload: Any = None) -> str:
    """``<model_name>-<YYYY-MM-DD>-<hash10>`` with the hash over ``payload`` (params, window, data fingerprint)."""
    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    digest = hashlib.sha256(canonical_json({"model": model_name, "as_of": day, "payload": payload}).encode()).hexdigest()
    return f"{model_name}-{day}-{digest[:10]}"


def _library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("lifetimes", "xgboost", "scikit-learn", "pandas", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            out[pkg] = "unknown"
    return out


def save_artifact(
    directory: str | os.PathLike[str],
    model: Any,
    *,
    model_name: str,
    model_version: str,
    train_start: DateLike | None = None,
    train_end: DateLike | None = None,
    cutoff_date: DateLike | None = None,
    horizon_days: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    baseline_metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its metadata into ``directory`` (replaced atomically); returns the path."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        files: list[str] = []
        if isinstance(model, CLVModel):
            (tmp / "model.json").write_text(json.dumps(to_jsonable(model.to_dict()), indent=2, sort_keys=True))
            files.append("model.json")
            kind = "CLVModel"
            params = params if params is not None else model.params
        else:
            joblib.dump(model, tmp / "model.joblib")
            files.append("model.joblib")
            kind = type(model).__name__
            booster = _booster(model)
            if booster is not None:
                booster.save_model(str(tmp / "booster.json"))
                files.append("booster.json")
        metadata = {
            "format_version": FORMAT_VERSION,
            "model_name": model_name,
            "model_version": model_version,
            "model_class": kind,
            "training_window": {
                "train_start": train_start,
                "train_end": train_end,
                "cutoff_date": cutoff_date,
                "horizon_days": horizon_days,
            },
            "metrics": dict(metrics or {}),
            "baseline_metrics": dict(baseline_metrics or {}),
            "params": dict(params or {}),
            "extra": dict(extra or {}),
            "libraries": _library_versions(),
            "files": files,
        }
        (tmp / METADATA_FILE).write_text(json.dumps(to_jsonable(metadata), indent=2, sort_keys=True))
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _booster(model: Any) -> Any:
    for attr in ("classifier", "regressor"):
        est = getattr(model, attr, None)
        if est is not None and hasattr(est, "get_booster"):
            return est.get_booster()
    if hasattr(model, "get_booster"):
        return model.get_booster()
    return None


def load_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no model artifact at {directory} ({METADATA_FILE} missing)")
    return json.loads(path.read_text())


def load_artifact(directory: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Read ``(model, metadata)`` written by :func:`save_artifact`."""
    meta = load_metadata(directory)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported artifact format {meta.get('format_version')!r} at {directory}")
    if meta["model_class"] == "CLVModel":
        data = json.loads((Path(directory) / "model.json").read_text())
        return CLVModel.from_dict(data), meta
    return joblib.load(Path(directory) / "model.joblib"), meta


__all__ = [
    "canonical_json",
    "load_artifact",
    "load_metadata",
    "make_model_version",
    "save_artifact",
    "to_jsonable",
]
