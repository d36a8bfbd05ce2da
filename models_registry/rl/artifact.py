"""An RL policy as bytes and back, with no pickle: a zip holding ``manifest.json`` (algorithm,
positions, state spec, hyper-parameters, each array's shape) and ``arrays.npz`` read with
``allow_pickle=False``. ``load`` checks the manifest, the exact array names, dtypes and shapes the
algorithm implies before building anything; anything else is ``invalid_artifact``. The registry
records the archive's sha256 and verifies it before :func:`load` is called (``serving.policy_get``).
"""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np

from api.errors import ApplicationError

from .agents import ALGOS, ARRAYS, Policy
from .env import POSITION_SETS, StateSpec

FORMAT = "rl-policy"
FORMAT_VERSION = 1
MAX_BYTES = 16 * 1024 * 1024
SPEC_ARRAYS = ("feat_mean", "feat_std")


def _invalid(message: str, **details) -> ApplicationError:
    return ApplicationError("invalid_artifact", message, details or None)


def dump(policy: Policy) -> bytes:
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in policy.arrays.items()}
    arrays["feat_mean"] = np.asarray(policy.spec.feat_mean, dtype=np.float64)
    arrays["feat_std"] = np.asarray(policy.spec.feat_std, dtype=np.float64)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algo": policy.algo,
        "positions": list(policy.positions),
        "state": policy.spec.to_json(),
        "params": {k: v for k, v in policy.params.items() if isinstance(v, int | float | str)},
        "arrays": {k: list(v.shape) for k, v in sorted(arrays.items())},
    }
    npz = io.BytesIO()
    np.savez(npz, **arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, sort_keys=True))
        zf.writestr("arrays.npz", npz.getvalue())
    return buf.getvalue()


def _expected_shapes(algo: str, n_pos: int, n_lags: int, n_feat: int, hidden: int | None) -> dict:
    d = 2 * n_lags + n_feat + 1
    shapes = {"feat_mean": (n_feat,), "feat_std": (n_feat,)}
    if algo == "q_learning":
        shapes["q"] = (2**n_lags * n_pos, n_pos)
    elif algo == "dqn":
        shapes.update(w1=(d, hidden), b1=(hidden,), w2=(hidden, n_pos), b2=(n_pos,))
    else:
        shapes.update(w_pi=(d, n_pos), b_pi=(n_pos,), w_v=(d,), b_v=(1,))
    return shapes


def load(data: bytes) -> Policy:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, TypeError) as exc:
        raise _invalid("The artifact is not a zip archive.") from exc
    with zf:
        infos = zf.infolist()
        if sorted(i.filename for i in infos) != ["arrays.npz", "manifest.json"]:
            raise _invalid("The archive must hold exactly manifest.json and arrays.npz.")
        if any(i.file_size > MAX_BYTES for i in infos):
            raise _invalid("An archive entry is too large.")
        try:
            m = json.loads(zf.read("manifest.json"))
        except ValueError as exc:
            raise _invalid("The manifest is not JSON.") from exc
        expected = {"format", "format_version", "algo", "positions", "state", "params", "arrays"}
        if not isinstance(m, dict) or set(m) != expected:
            raise _invalid("Unexpected manifest fields.")
        if m["format"] != FORMAT or m["format_version"] != FORMAT_VERSION:
            raise _invalid(f"Not a {FORMAT} v{FORMAT_VERSION} artifact.")
        algo, positions, state = m["algo"], m["positions"], m["state"]
        if algo not in ALGOS:
            raise _invalid("Unknown algorithm.", algo=str(algo))
        if tuple(positions) not in POSITION_SETS.values():
            raise _invalid("Unknown position set.")
        if not isinstance(state, dict) or set(state) != {"n_lags", "feature_names", "ret_scale"}:
            raise _invalid("Malformed state spec.")
        n_lags, names, scale = state["n_lags"], state["feature_names"], state["ret_scale"]
        if not isinstance(n_lags, int) or isinstance(n_lags, bool) or not 1 <= n_lags <= 8:
            raise _invalid("n_lags must be 1-8.")
        if not isinstance(names, list) or not all(isinstance(s, str) for s in names) or len(names) > 500:
            raise _invalid("feature_names must be a list of strings.")
        if not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
            raise _invalid("ret_scale must be a positive number.")
        params = m["params"]
        if not isinstance(params, dict):
            raise _invalid("params must be an object.")
        hidden = params.get("hidden") if algo == "dqn" else None
        if algo == "dqn" and (not isinstance(hidden, int) or not 1 <= hidden <= 1024):
            raise _invalid("A DQN needs its hidden width (1-1024).")
        shapes = _expected_shapes(algo, len(positions), n_lags, len(names), hidden)
        if set(shapes) != set(ARRAYS[algo]) | set(SPEC_ARRAYS):  # the algorithms and this table agree
            raise _invalid("Internal: array table mismatch.")
        try:
            with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
                if sorted(npz.files) != sorted(shapes):
                    raise _invalid("The arrays do not match the algorithm.", arrays=sorted(npz.files))
                arrays = {}
                for k, shape in shapes.items():
                    a = npz[k]
                    if a.dtype != np.float64 or a.shape != shape or not np.all(np.isfinite(a)):
                        raise _invalid("An array has the wrong dtype, shape or values.", array=k)
                    arrays[k] = a
        except ApplicationError:
            raise
        except Exception as exc:  # a malformed npz raises several types
            raise _invalid("arrays.npz could not be read.") from exc
    spec = StateSpec(
        n_lags=n_lags,
        feature_names=list(names),
        ret_scale=float(scale),
        feat_mean=arrays.pop("feat_mean"),
        feat_std=arrays.pop("feat_std"),
    )
    return Policy(algo, tuple(positions), spec, arrays, params)
