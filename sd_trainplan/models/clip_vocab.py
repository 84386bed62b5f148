"""The real CLIP BPE vocabulary, from the file a PyPI package ships, as tokenizer files.

OpenAI's CLIP tokenizer (the one every SD1.x checkpoint uses) is defined by
`bpe_simple_vocab_16e6.txt.gz`, which `clip-anytorch` and `open_clip_torch` both ship.
From it we write `vocab.json` and `merges.txt` in the layout transformers' CLIPTokenizer
reads, so a tokenizer is built offline, identical to openai/clip-vit-large-patch14's.
Nothing is downloaded.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path
from typing import Dict, List, Optional

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
PACKAGES = ("clip", "open_clip")  # clip-anytorch, open_clip_torch
N_MERGES = 49152 - 256 - 2        # as CLIP's SimpleTokenizer: the vocabulary is 49408 tokens


class VocabNotFound(RuntimeError):
    pass


def find_bpe_file() -> Path:
    """Locate the vocabulary inside an installed package without importing the package."""
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            path = Path(folder) / VOCAB_FILE
            if path.is_file():
                return path
    raise VocabNotFound(f"{VOCAB_FILE} not found: install clip-anytorch or open_clip_torch (they ship it)")


def bytes_to_unicode() -> Dict[int, str]:
    """CLIP's reversible byte -> printable character table (GPT-2's)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def read_merges(path: Path) -> List[str]:
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    return lines[1:N_MERGES + 1]


def write_tokenizer_files(folder: Path, bpe: Optional[Path] = None) -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json (idempotent, atomic per file)."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder
    merges = read_merges(bpe or find_bpe_file())
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split(" ")) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    files = {
        "vocab.json": json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer_config.json": json.dumps({"model_max_length": 77, "bos_token": "<|startoftext|>",
                                             "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                                             "unk_token": "<|endoftext|>", "do_lower_case": True}),
        "special_tokens_map.json": json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                               "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}),
    }
    for name, text in files.items():
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
    return folder


def default_cache_dir() -> Path:
    base = os.environ.get("SD_TRAINPLAN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sd_trainplan")
    return Path(base)


def tokenizer_dir() -> Path:
    """A folder with the CLIP tokenizer files, made once from the packaged vocabulary."""
    return write_tokenizer_files(default_cache_dir() / "clip-tokenizer")


def clip_tokenizer():
    """A CLIP tokenizer over the real vocabulary (offline): ours (clip_tokenizer.py), which gives the ids
    transformers' CLIPTokenizer gives."""
    from .clip_tokenizer import load_folder
    return load_folder(tokenizer_dir())
