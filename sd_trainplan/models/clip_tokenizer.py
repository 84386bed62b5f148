"""CLIP's BPE tokenizer, giving the ids transformers' (slow) CLIPTokenizer gives, without transformers.

Why it exists: a run on an SD1.x/SD2.x folder needs nothing else of transformers (models/plain has
the models), and `import transformers` alone took 0.68 s of the start on the GPU machine (0.56 s of
it transformers.dependency_versions_check). This mirrors transformers 4.46.1, for what we use:
- models/clip/tokenization_clip.py: the text clean-up (ftfy.fix_text when ftfy imports, else
  clip_text_split.basic_clean), the pattern, byte-level BPE with `</w>`;
- tokenization_utils.py: added tokens (the special ones, Textual Inversion's) cut out of the text
  first (clip_text_split.trie_split), then its lstrip/rstrip/single_word rules; add_tokens' ids;
- tokenization_utils_base.py: how from_pretrained reads the folder (tokenizer_config.json,
  special_tokens_map.json, added_tokens.json), truncation, padding, save_pretrained's files.
`load_folder` returns None for a folder using anything beyond that; the caller then uses transformers.
`regex` (not `re`): the pattern's \\p{L}/\\p{N} and their Unicode tables must be transformers' own.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Union

import regex

from .clip_text_split import basic_clean, trie_split
from .clip_vocab import N_MERGES, bytes_to_unicode

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                "additional_special_tokens")
OURS = ("bos_token", "eos_token", "unk_token", "pad_token")  # CLIP's; a folder naming others goes to transformers
LARGE, VERY_LARGE = int(1e20), int(1e30)  # transformers' LARGE_INTEGER, VERY_LARGE_INTEGER
PATTERN = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                        regex.IGNORECASE)
BYTES = bytes_to_unicode()


def added(content: str, **flags) -> dict:
    """An AddedToken's state (tokenizers' defaults: normalized is `not special`)."""
    special = bool(flags.get("special", False))
    return {"content": content, "single_word": bool(flags.get("single_word", False)),
            "lstrip": bool(flags.get("lstrip", False)), "rstrip": bool(flags.get("rstrip", False)),
            "normalized": bool(flags.get("normalized", not special)), "special": special}


def _content(token) -> str:
    return token["content"] if isinstance(token, dict) else token


class Encoding(dict):
    """What BatchEncoding gives us: ["input_ids"] and .input_ids (and attention_mask)."""
    input_ids = property(lambda self: self["input_ids"])
    attention_mask = property(lambda self: self["attention_mask"])


class ClipTokenizer:
    """What sd_trainplan uses of CLIPTokenizer (and diffusers' pipelines, in our tests), no more."""
    def __init__(self, folder: Path, config: dict, specials: Dict[str, Union[str, dict]], decoder: Dict[int, dict]):
        self._config = config  # tokenizer_config.json as read: save_pretrained writes it back
        self.encoder: Dict[str, int] = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        merges = (folder / "merges.txt").read_text(encoding="utf-8").strip().split("\n")[1:N_MERGES + 1]
        self.bpe_ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        limit = config.get("model_max_length", config.get("max_len"))
        self.model_max_length = VERY_LARGE if limit is None else limit
        try:  # as CLIPTokenizer.__init__ decides
            import ftfy
            self._fix_text = ftfy.fix_text
        except ImportError:
            self._fix_text = None
        for key in ("bos_token", "eos_token", "unk_token"):  # CLIPTokenizer wraps these (lstrip/rstrip False)
            if isinstance(specials.get(key), str):
                specials[key] = added(specials[key], normalized=True)
        self._specials = specials  # attribute -> str or AddedToken state, as transformers keeps them
        self._decoder = dict(decoder)  # id -> AddedToken state
        self._trie: dict = {}
        self.added_tokens_encoder = {t["content"]: i for i, t in self._decoder.items()}
        seen, todo = set(), []  # PreTrainedTokenizer.__init__: the special tokens become added tokens
        for key in OURS:
            tok = specials.get(key)
            if tok and _content(tok) not in seen:
                seen.add(_content(tok))
                if not (isinstance(tok, str) and tok in self.added_tokens_encoder):
                    todo.append(tok)
        self._add(todo, special=True)

    # --- the special tokens (transformers keeps the strings: setting pad_token adds nothing) ----------
    def _special(self, key: str) -> Optional[str]:
        tok = self._specials.get(key)
        return None if tok is None else _content(tok)

    bos_token = property(lambda self: self._special("bos_token"))
    eos_token = property(lambda self: self._special("eos_token"))
    unk_token = property(lambda self: self._special("unk_token"))
    pad_token = property(lambda self: self._special("pad_token"),
                         lambda self, value: self._specials.__setitem__("pad_token", value))
    bos_token_id = property(lambda self: self.convert_tokens_to_ids(self.bos_token))
    eos_token_id = property(lambda self: self.convert_tokens_to_ids(self.eos_token))
    unk_token_id = property(lambda self: self.convert_tokens_to_ids(self.unk_token))
    pad_token_id = property(lambda self: self.convert_tokens_to_ids(self.pad_token))

    # --- the vocabulary ---------------------------------------------------------------------------
    def get_vocab(self) -> Dict[str, int]:
        return dict(self.encoder, **{t["content"]: i for i, t in sorted(self._decoder.items())})

    def __len__(self) -> int:
        return len(self.get_vocab())

    def convert_tokens_to_ids(self, tokens):
        if tokens is None or isinstance(tokens, str):
            return None if tokens is None else self._id(tokens)
        return [self._id(t) for t in tokens]

    def _id(self, token: str) -> Optional[int]:
        if token in self.added_tokens_encoder:
            return self.added_tokens_encoder[token]
        return self.encoder.get(token, self.encoder.get(self.unk_token))

    def pad_with(self, token: str) -> None:
        """The pad token as a folder whose special_tokens_map names it loads it: a special (added) token,
        so the text's own "!" reads as the pad id, not through the BPE. Setting `pad_token` alone (what
        transformers does) would read "!" differently before a save and after it."""
        self.pad_token = token
        self._add([token], special=True)

    def add_tokens(self, new_tokens: Union[str, List[str]]) -> int:
        """Plain (not special) tokens, as Textual Inversion adds them; returns how many are new."""
        return self._add([new_tokens] if isinstance(new_tokens, str) else list(new_tokens), special=False)

    def _add(self, tokens: list, special: bool) -> int:
        """PreTrainedTokenizer._add_tokens."""
        vocab = self.get_vocab()
        new = 0
        specials = {self._special(k) for k in OURS} - {None}
        for tok in tokens:
            if _content(tok) == "":
                continue
            if isinstance(tok, str):
                if tok in self.added_tokens_encoder:
                    continue
                is_special = tok in specials or special
                tok = added(tok, normalized=not is_special, special=is_special)
            elif special:
                tok["special"] = True  # transformers sets it on the object the attribute holds too
            if tok["content"] in vocab:
                index = vocab[tok["content"]]
            else:
                index = vocab[tok["content"]] = len(vocab)  # evaluated first: the next free id
                new += 1
            self._decoder[index] = tok
            self.added_tokens_encoder[tok["content"]] = index
        for tok in self._decoder.values():
            node = self._trie
            for ch in tok["content"]:
                node = node.setdefault(ch, {})
            node[""] = 1
        return new

    # --- text -> tokens -> ids --------------------------------------------------------------------
    def tokenize(self, text: str) -> List[str]:
        """PreTrainedTokenizer.tokenize: added tokens cut out whole, the rest through _tokenize."""
        pieces = trie_split(self._trie, text)
        for i, piece in enumerate(pieces):
            if piece not in self.added_tokens_encoder:
                continue
            tok = self._decoder[self.added_tokens_encoder[piece]]
            left = pieces[i - 1] if i > 0 else None
            right = pieces[i + 1] if i < len(pieces) - 1 else None
            if tok["rstrip"] and right:
                pieces[i + 1] = right.lstrip()
            if tok["lstrip"] and left:
                pieces[i - 1] = left.rstrip()
            if tok["single_word"] and left and left[-1] != " ":
                pieces[i - 1] += piece
                pieces[i] = ""
            elif tok["single_word"] and right and right[0] != " ":
                pieces[i + 1] = piece + pieces[i + 1]
                pieces[i] = ""
        out: List[str] = []
        for piece in pieces:
            if piece in self.added_tokens_encoder:
                out.append(piece)
            elif piece:
                out.extend(self._tokenize(piece))
        return out

    def _tokenize(self, text: str) -> List[str]:
        if self._fix_text is None:
            text = basic_clean(text)
        else:
            text = regex.sub(r"\s+", " ", self._fix_text(text)).strip().lower()
        out = []
        for word in PATTERN.findall(text):
            out.extend(self._bpe("".join(BYTES[b] for b in word.encode("utf-8"))).split(" "))
        return out

    def _bpe(self, token: str) -> str:
        """CLIPTokenizer.bpe: merge the lowest-ranked pair until none is left (cached per word)."""
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        if len(word) == 1:
            return token + "</w>"
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            first, second = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if (first, second) not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        self.cache[token] = " ".join(word)
        return self.cache[token]

    def __call__(self, text, padding=False, truncation=None, max_length: Optional[int] = None,
                 add_special_tokens: bool = True, return_tensors: Optional[str] = None) -> Encoding:
        """tokenizer(text or texts, ...) as PreTrainedTokenizerBase.__call__ does it for one sequence each."""
        batched = isinstance(text, (list, tuple))
        if max_length is not None and padding is False and truncation is None:
            truncation = True  # transformers' old rule: max_length alone turns truncation on
        pad = {False: None, "do_not_pad": None, True: "longest", "longest": "longest", "max_length": "max_length"}
        cut = {None: False, False: False, "do_not_truncate": False, True: True, "longest_first": True, "only_first": True}
        if padding not in pad or truncation not in cut:
            raise ValueError(f"padding={padding!r}, truncation={truncation!r}: not what this tokenizer does")
        padding, truncation = pad[padding], cut[truncation]
        if max_length is None and padding == "max_length":
            padding, max_length = (None, None) if self.model_max_length > LARGE else (padding, self.model_max_length)
        if max_length is None and truncation:
            truncation, max_length = (False, None) if self.model_max_length > LARGE else (True, self.model_max_length)
        rows = []
        for one in (text if batched else [text]):
            ids = self.convert_tokens_to_ids(self.tokenize(one))
            remove = len(ids) + (2 if add_special_tokens else 0) - (max_length or 0)
            if truncation and max_length and remove > 0 and len(ids) > remove:
                ids = ids[:-remove]
            rows.append([self.bos_token_id] + ids + [self.eos_token_id] if add_special_tokens else ids)
        width = max(map(len, rows), default=0) if padding == "longest" else max_length if padding else 0
        masks = [[1] * len(r) + [0] * (width - len(r)) for r in rows]
        rows = [r + [self.pad_token_id] * (width - len(r)) for r in rows]
        if return_tensors == "pt":
            import torch
            return Encoding(input_ids=torch.tensor(rows), attention_mask=torch.tensor(masks))
        if return_tensors is not None:
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' or None")
        return Encoding(input_ids=rows, attention_mask=masks) if batched else \
            Encoding(input_ids=rows[0], attention_mask=masks[0])

    # --- files ------------------------------------------------------------------------------------
    def save_pretrained(self, folder) -> None:
        """The files CLIPTokenizer.save_pretrained writes, which it and load_folder read back alike."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in self._config.items()
                  if k not in ("name_or_path", "special_tokens_map_file", "tokenizer_file", "added_tokens_decoder")}
        config.update({k: self._special(k) for k in OURS if self._special(k) is not None})
        config.update(model_max_length=self.model_max_length, tokenizer_class="CLIPTokenizer",
                      added_tokens_decoder={str(i): t for i, t in sorted(self._decoder.items())})
        config.setdefault("clean_up_tokenization_spaces", False)
        config.setdefault("errors", "replace")
        smap = {k: ({x: v for x, v in t.items() if x != "special"} if isinstance(t, dict) else t)
                for k, t in self._specials.items() if t}
        extra = {t["content"]: i for i, t in self._decoder.items() if i >= len(self.encoder)}
        files = {"tokenizer_config.json": config, "special_tokens_map.json": smap, "vocab.json": self.encoder}
        if extra:
            files["added_tokens.json"] = extra
        for name, data in files.items():
            (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
        merges = sorted(self.bpe_ranks, key=self.bpe_ranks.get)
        (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                           encoding="utf-8")


def _read(path: Path) -> Optional[dict]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_folder(folder) -> Optional[ClipTokenizer]:
    """Ours for a CLIPTokenizer folder (vocab.json + merges.txt) read as CLIPTokenizer.from_pretrained
    reads it; None where the folder uses something ours does not do (the caller uses transformers)."""
    folder = Path(folder)
    if not (folder / "vocab.json").is_file() or not (folder / "merges.txt").is_file() \
            or (folder / "tokenizer.json").exists():
        return None
    config = _read(folder / "tokenizer_config.json") or {}
    if config.get("tokenizer_class") not in (None, "CLIPTokenizer") or config.get("split_special_tokens") \
            or config.get("padding_side", "right") != "right" or config.get("truncation_side", "right") != "right" \
            or any(k in config for k in ("vocab_file", "merges_file", "init_inputs")):
        return None
    init, decoder = dict(config), {}
    if "added_tokens_decoder" in config:  # saved by transformers >= 4.34 (and by us)
        decoder = {int(i): added(**t) for i, t in config["added_tokens_decoder"].items()}
        by_content = {t["content"]: t for t in decoder.values()}
    else:  # older folders: special_tokens_map.json wins over the config, then added_tokens.json
        by_content = {}
        for key, value in (_read(folder / "special_tokens_map.json") or {}).items():
            init[key] = added(**dict(value, special=True)) if isinstance(value, dict) else value
        extra = _read(folder / "added_tokens.json")
        if extra:
            specials = {_content(init[k]) for k in SPECIAL_KEYS if k != "additional_special_tokens" and init.get(k)}
            for content, i in extra.items():
                decoder[i] = added(content, normalized=content not in specials, special=content in specials)
    specials = {}
    for key in SPECIAL_KEYS:
        value = init.get(key)
        if isinstance(value, dict):  # {"__type": "AddedToken", ...} in an old config
            value = added(**{k: v for k, v in value.items() if k != "__type"})
        if value and (key not in OURS or not isinstance(value, (str, dict))):
            return None  # sep/cls/mask/additional special tokens: not CLIP's; transformers knows them
        if value:
            specials[key] = by_content.get(_content(value), value)
    return ClipTokenizer(folder, config, specials, decoder)
