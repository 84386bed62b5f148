"""The Token field against the WebUI's loaded embeddings, checked when Start is pressed.

The WebUI's CLIP replaces any run of prompt tokens that spells a loaded embedding's name with that
embedding's vectors (modules/sd_hijack_clip.py tokenize_line ->
textual_inversion.EmbeddingDatabase.find_embedding_at_position, v1.10.1). So a token that is (or
contains) a loaded embedding's name cannot be trained: Textual Inversion would register a second
embedding under a name already taken (the run failed at its first step, leaving an empty run
folder), and Dreambooth or LoRA would learn from that embedding's vectors instead of the word.
The match is the WebUI's own: the token as its CLIP tokenizes it, looked up at each position.
"""
from __future__ import annotations

from typing import List, Optional


def clashing_embedding(token: str, tokenize, embedding_db) -> Optional[object]:
    """The loaded embedding the WebUI would put in place of (part of) `token`, or None. `tokenize`:
    the WebUI's own (texts -> token ids without the special ones: AUTOMATIC1111's hijacked CLIP
    cond_stage_model.tokenize, Forge's text engine tokenize), or None to match the name alone."""
    token = token.strip()
    if not token:
        return None
    if token in getattr(embedding_db, "word_embeddings", {}):
        return embedding_db.word_embeddings[token]
    if tokenize is None:  # no tokenizer to ask: the name alone was checked
        return None
    ids = list(tokenize([token])[0])
    for offset in range(len(ids)):
        found, _ = embedding_db.find_embedding_at_position(ids, offset)
        if found is not None:
            return found
    return None


def token_problems(cfg, tokenize, embedding_db) -> List[str]:
    """'token: ...' when the run's token clashes with a loaded embedding (empty: it does not)."""
    if embedding_db is None:
        return []
    emb = clashing_embedding(cfg.token, tokenize, embedding_db)
    if emb is None:
        return []
    name = getattr(emb, "name", "?")
    where = f" ({emb.filename})" if getattr(emb, "filename", None) else ""
    same = name == cfg.token.strip()
    what = f"'{cfg.token.strip()}' is" if same else f"'{cfg.token.strip()}' contains '{name}', which is"
    if cfg.method == "ti":
        return [f"token: {what} already a loaded embedding{where}; a run trains a new embedding named after its"
                " token, so choose a word no embedding uses"]
    return [f"token: {what} a loaded embedding{where}: in prompts the WebUI puts that embedding's vectors in its"
            " place, so the run would train on them instead of the word; choose a word no embedding uses"]
