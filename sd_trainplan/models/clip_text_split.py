"""How transformers' (4.46.1) CLIPTokenizer cuts text before its BPE, for models/clip_tokenizer.py:
the clean-up it does when ftfy does not import (BERT's BasicTokenizer, configured as CLIPTokenizer
configures it) and the split around added tokens (tokenization_utils.Trie), ported line by line: its
choices among overlapping tokens are the ids a user gets."""
from __future__ import annotations

import unicodedata
from typing import List


def basic_clean(text: str) -> str:
    """BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize, joined: no punctuation split, no
    accent stripping; control characters dropped, CJK ideographs spaced, NFC, lower case."""
    out = []  # (BERT's also maps Zs spaces to " ": split() below splits on them all the same)
    for ch in text:
        if ch in "\t\n\r":
            out.append(" ")
        elif ord(ch) in (0, 0xFFFD) or unicodedata.category(ch).startswith("C"):
            continue
        elif _is_cjk(ord(ch)):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    return " ".join(t.lower() for t in unicodedata.normalize("NFC", "".join(out)).split())


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def trie_split(trie: dict, text: str) -> List[str]:
    """transformers' Trie.split: cut `text` around the added tokens found in it, as it finds them
    (the first to end, extended to the longest one starting at or before it)."""
    states, offsets, skip = {}, [0], 0
    for current, char in enumerate(text):
        if skip and current < skip:
            continue
        to_remove, reset = set(), False
        for start, node in states.items():
            if "" in node:
                for lookstart, looknode in states.items():
                    if lookstart > start:
                        break
                    lookahead = end = current + 1 if lookstart < start else current
                    nxt = text[lookahead] if lookahead < len(text) else None
                    if "" in looknode:
                        start, end, skip = lookstart, lookahead, lookahead
                    while nxt in looknode:
                        looknode = looknode[nxt]
                        lookahead += 1
                        if "" in looknode:
                            start, end, skip = lookstart, lookahead, lookahead
                        if lookahead == len(text):
                            break
                        nxt = text[lookahead]
                offsets += [start, end]
                reset = True
                break
            elif char in node:
                states[start] = node[char]
            else:
                to_remove.add(start)
        if reset:
            states = {}
        else:
            for start in to_remove:
                del states[start]
        if current >= skip and char in trie:
            states[current] = trie[char]
    for start, node in states.items():
        if "" in node:
            offsets += [start, len(text)]
            break
    pieces, start = [], 0
    for end in offsets + [len(text)]:
        if start < end:
            pieces.append(text[start:end])
            start = end
    return pieces
