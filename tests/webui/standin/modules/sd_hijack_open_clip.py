"""Mirrors modules/sd_hijack_open_clip.py (v1.10.1) for SDXL's second text encoder:
FrozenOpenCLIPEmbedder2WithCustomWords, the WebUI's wrapper of sgm's FrozenOpenCLIPEmbedder2
(open_clip's tokenizer, the layer the config names, the pooled output kept on the result).
Left out: SD2's FrozenOpenCLIPEmbedderWithCustomWords."""
import open_clip.tokenizer
import torch

from modules import devices, sd_hijack_clip

tokenizer = open_clip.tokenizer._tokenizer


class FrozenOpenCLIPEmbedder2WithCustomWords(sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords):
    def set_tokens(self):
        self.comma_token = [v for k, v in tokenizer.encoder.items() if k == ",</w>"][0]
        self.id_start = tokenizer.encoder["<start_of_text>"]
        self.id_end = tokenizer.encoder["<end_of_text>"]
        self.id_pad = 0

    def tokenize(self, texts):
        return [tokenizer.encode(text) for text in texts]

    def encode_with_transformers(self, tokens):
        d = self.wrapped.encode_with_transformer(tokens)
        z = d[self.wrapped.layer]
        pooled = d.get("pooled")
        if pooled is not None:
            z.pooled = pooled
        return z

    def encode_embedding_init_text(self, init_text, nvpt):
        ids = tokenizer.encode(init_text)
        ids = torch.asarray([ids], device=devices.device, dtype=torch.int)
        weight = self.wrapped.model.token_embedding.wrapped.weight
        return self.wrapped.model.token_embedding.wrapped(ids.to(weight.device)).squeeze(0)
