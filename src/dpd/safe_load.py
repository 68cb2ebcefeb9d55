"""Open the files of a run folder without executing code from them.

A run folder may come from someone else. Two of its files are pickles in SB3's formats: ``vecnormalize.pkl`` and
the ``data`` entry of ``model.zip`` (cloudpickled entries such as the learning-rate schedule or the spaces). A
crafted pickle runs any code when it is loaded, so dpd:

- reads normalisation statistics from ``vecnormalize.json`` (plain data it writes itself), never from the pickle;
- loads a model zip with SB3's ``load`` and ``custom_objects`` for every pickled entry: schedules (not needed to
  act) become constants, the spaces come from the env, and anything else is unpickled by a restricted unpickler
  that only builds a short list of harmless types (numpy arrays, gymnasium spaces, torch activation classes, SB3
  policy classes) and refuses everything else with a one-line error; network weights are read by SB3 with
  ``torch.load(weights_only=True)``.

``PPO.load`` on a file from a stranger remains SB3's own risk; :func:`load_model` is the safe way.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.base_class import BaseAlgorithm

from dpd.errors import DPDUserError
from dpd.names import VECNORMALIZE_JSON, VECNORMALIZE_PICKLE
from dpd.run_files import read_json

#: entries replaced by constants: they only matter for training, and SB3 stores them as pickled functions
_SCHEDULE_KEYS = {"lr_schedule", "learning_rate", "clip_range", "clip_range_vf", "target_policy_noise",
                  "target_noise_clip"}
#: (module, name) that the restricted unpickler may look up, besides the classes of _SAFE_BASES
_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"), ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy._core.multiarray", "scalar"), ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("numpy.random._pickle", "__randomstate_ctor"),
    ("collections", "OrderedDict"), ("collections", "deque"), ("builtins", "dict"), ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "float"), ("builtins", "int"), ("builtins", "bool"),
    ("builtins", "str"), ("builtins", "slice"), ("stable_baselines3.common.type_aliases", "TrainFreq"),
    ("stable_baselines3.common.type_aliases", "TrainFrequencyUnit"), ("copyreg", "_reconstructor"), ("builtins", "object"),
}
_SAFE_MODULE_PREFIXES = ("torch.nn.modules.", "stable_baselines3.", "gymnasium.spaces.", "numpy.random.")


def _safe_bases() -> tuple[type, ...]:
    import numpy as np
    import torch as th
    from stable_baselines3.common.buffers import BaseBuffer
    from stable_baselines3.common.noise import ActionNoise
    from stable_baselines3.common.policies import BasePolicy

    return (th.nn.Module, BasePolicy, gym.Space, np.random.BitGenerator, BaseBuffer, ActionNoise, np.generic)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if module == "numpy" or module.startswith(_SAFE_MODULE_PREFIXES):
            obj = super().find_class(module, name)
            if isinstance(obj, type) and issubclass(obj, _safe_bases()):
                return obj
        raise pickle.UnpicklingError(f"{module}.{name} is not something dpd unpickles")


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` that builds only harmless types (see the module docstring); raises UnpicklingError."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def _custom_objects(zip_path: Path, env_spaces: tuple[gym.Space, gym.Space] | None) -> dict[str, Any]:
    """A replacement for every pickled entry of the zip's ``data``."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            data = json.loads(archive.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DPDUserError(f"{zip_path} is not an SB3 model zip ({exc})") from None
    if not isinstance(data, dict):
        raise DPDUserError(f"{zip_path} is not an SB3 model zip (its data entry is not a mapping)")
    custom: dict[str, Any] = {}
    for key, value in data.items():
        if not (isinstance(value, dict) and ":serialized:" in value):
            continue
        if key in _SCHEDULE_KEYS:
            custom[key] = 0.0
        elif key in ("observation_space", "action_space") and env_spaces is not None:
            custom[key] = env_spaces[0] if key == "observation_space" else env_spaces[1]
        else:
            try:
                custom[key] = restricted_loads(base64.b64decode(value[":serialized:"].encode()))
            except Exception as exc:
                raise DPDUserError(f"{zip_path}: entry {key!r} holds a pickled object dpd does not open ({exc});"
                                   " was the run folder written by dpd?") from None
    return custom


def load_model(cls: type[BaseAlgorithm], zip_path: str | Path, env: Any = None,
               spaces: tuple[gym.Space, gym.Space] | None = None) -> BaseAlgorithm:
    """``cls.load(zip_path)`` with no code run from the file. ``spaces``: (observation, action) space to use
    (default: ``env``'s)."""
    zip_path = Path(zip_path)
    if spaces is None and env is not None:
        spaces = (env.observation_space, env.action_space)
    custom = _custom_objects(zip_path, spaces)
    try:
        return cls.load(zip_path, env=env, device="cpu", custom_objects=custom)
    except DPDUserError:
        raise
    except Exception as exc:
        if "size mismatch" in str(exc) and spaces is not None:  # SB3's multi-line state_dict report: say what it means
            raise DPDUserError(f"cannot load {zip_path}: its networks do not fit this environment (observations"
                               f" {spaces[0].shape}, actions {spaces[1]}); pass the environment the run was trained"
                               " on") from None
        raise DPDUserError(f"cannot load {zip_path}: {type(exc).__name__}: {exc}") from None


def read_normalization(folder: Path) -> dict[str, Any] | None:
    """The learner's ``vecnormalize.json`` (None when the run did not normalise). A folder with only SB3's pickle
    (written by an earlier dpd) is refused rather than unpickled."""
    path, pickled = folder / VECNORMALIZE_JSON, folder / VECNORMALIZE_PICKLE
    if path.is_file():
        state = read_json(path)  # bounded; values checked against the env by frozen_normalization
        if not isinstance(state, dict):
            raise DPDUserError(f"{path} is not a normalisation file")
        return state
    if pickled.is_file():
        raise DPDUserError(f"{folder} has only {pickled.name}, which dpd does not unpickle (a pickle can run code);"
                           " a run written by this dpd version also has vecnormalize.json")
    return None
