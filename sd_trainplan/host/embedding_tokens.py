"""A run's Textual Inversion embedding in the WebUI's own embedding database, the same way in
AUTOMATIC1111 (SD and SDXL) and Forge: refused when its name is already loaded, registered so the
host's text encoder finds it by name in a prompt, registered again if a refresh of the Textual
Inversion cards reloaded the database mid-run (the prompt would silently train nothing), and taken
out at the end unless the exported file already replaced it under that name.

The adapters mix in one of these; what differs per host is only where the database lives and how it
is called (AUTOMATIC1111's calls take the model too: modules/textual_inversion/textual_inversion.py;
Forge's text engine's do not: backend/text_processing/textual_inversion.py).
"""
from __future__ import annotations

from typing import Callable

from torch import nn


class DbToken:
    """Textual Inversion vectors living in a WebUI's embedding database."""

    def __init__(self, name: str, vectors: nn.Parameter, embedding):
        self.token = name
        self.vectors = vectors
        self.embedding = embedding

    @property
    def prompt_text(self) -> str:
        return self.token  # the host's text encoder finds the embedding by its name in the prompt


class EmbeddingDbTokens:
    """The bookkeeping; a host's class gives `token_db`, `register(emb)`, `unregister(name)` and
    `host_title`, and holds `tokens` (a list) and `on_token` (called with each token added, so the
    run can take it out at the end)."""
    host_title = "the WebUI"

    def refuse_taken(self, token: str) -> None:
        if token in self.token_db.word_embeddings:
            raise ValueError(f"token: an embedding named '{token}' is already loaded in {self.host_title}; choose a"
                             " new token (a run trains a new embedding under that name)")

    def register_new(self, make_token: Callable, embedding_class, data, token: str, n_vectors: int, shape: int):
        """An Embedding of the host's class over `data` (the trained parameter, or SDXL's dict of them),
        registered, and the run's token for it."""
        emb = embedding_class(data, token, step=0)
        emb.vectors, emb.shape = n_vectors, shape
        self.register(emb)
        tv = make_token(token, data, emb)
        self.tokens.append(tv)
        if self.on_token is not None:
            self.on_token(tv)
        return tv

    def keep_registered(self) -> None:
        for tv in self.tokens:
            if self.token_db.word_embeddings.get(tv.token) is not tv.embedding:
                self.register(tv.embedding)

    def remove_token(self, tv) -> None:
        """Take the run's embedding out of the database, unless it was already replaced (e.g. by
        the exported file, reloaded under the same name)."""
        if tv in self.tokens:
            self.tokens.remove(tv)
        if self.token_db.word_embeddings.get(tv.token) is tv.embedding:
            self.unregister(tv.token)


class A1111EmbeddingDb(EmbeddingDbTokens):
    """AUTOMATIC1111's database (`model_hijack.embedding_db`), whose calls take the loaded model."""

    @property
    def token_db(self):
        return self.embedding_db

    def register(self, emb) -> None:
        self.embedding_db.register_embedding(emb, self.model)

    def unregister(self, name: str) -> None:
        self.embedding_db.register_embedding_by_name(None, self.model, name)
