"""Named presets: data files under presets/ that fill planner inputs (never hide a figure)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

PRESET_DIR = Path(__file__).resolve().parents[2] / "presets"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    source: str
    description: str
    inputs: Mapping[str, Any]


class PresetError(ValueError):
    pass


def load_presets(folder: Optional[Path] = None) -> Dict[str, Preset]:
    folder = folder or PRESET_DIR
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            out[path.stem] = Preset(path.stem, data["title"], data.get("source", ""), data.get("description", ""),
                                    dict(data["inputs"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PresetError(f"preset file {path}: {e}") from None
    return out


def get_preset(name: str, folder: Optional[Path] = None) -> Preset:
    presets = load_presets(folder)
    if name not in presets:
        raise PresetError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
    return presets[name]
