"""Mirrors modules/sd_hijack_clip.py (v1.10.1) for SD1's CLIP: FrozenCLIPEmbedderWithCustomWords,
the WebUI's text stage. It tokenizes each prompt itself (weights from prompt_parser), cuts it
into chunks of 75 tokens (+ start/end), replaces the name of an embedding found in
`hijack.embedding_db` by as many placeholder tokens as it has vectors and records a fix
(offset, embedding) that EmbeddingsWithFixes applies inside the token embedding; clip skip
(CLIP_stop_at_last_layers) and the emphasis option act on the output. SDXL: the encoder returns the
chunks' pooled output too when its wrapped encoder does (`return_pooled`), ids after the end token
become `id_pad` where it differs, and FrozenCLIPEmbedderForSDXLWithCustomWords reads the hidden
layer the sgm config names. Left out: the comma back-tracking at a chunk's end, TI hashes in
infotext, the SD2 variant (sd_hijack_open_clip.py holds SDXL's OpenCLIP one)."""
import math
from collections import namedtuple

import torch

from modules import devices, prompt_parser, sd_emphasis
from modules.shared import opts

PromptChunkFix = namedtuple("PromptChunkFix", ["offset", "embedding"])


class PromptChunk:
    def __init__(self):
        self.tokens, self.multipliers, self.fixes = [], [], []


class FrozenCLIPEmbedderWithCustomWords(torch.nn.Module):
    def __init__(self, wrapped, hijack):
        super().__init__()
        self.wrapped, self.hijack = wrapped, hijack
        self.chunk_length = 75
        self.is_trainable = getattr(wrapped, "is_trainable", False)
        self.input_key = getattr(wrapped, "input_key", "txt")
        self.return_pooled = getattr(wrapped, "return_pooled", False)
        self.legacy_ucg_val = None  # for sgm's GeneralConditioner
        self.set_tokens()

    def set_tokens(self):
        self.tokenizer = self.wrapped.tokenizer
        vocab = self.tokenizer.get_vocab()
        self.comma_token = vocab.get(",</w>", None)
        self.id_start = self.tokenizer.bos_token_id
        self.id_end = self.id_pad = self.tokenizer.eos_token_id

    def empty_chunk(self):
        chunk = PromptChunk()
        chunk.tokens = [self.id_start] + [self.id_end] * (self.chunk_length + 1)
        chunk.multipliers = [1.0] * (self.chunk_length + 2)
        return chunk

    def get_target_prompt_token_count(self, token_count):
        return math.ceil(max(token_count, 1) / self.chunk_length) * self.chunk_length

    def tokenize(self, texts):
        return self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]

    def tokenize_line(self, line):
        parsed = prompt_parser.parse_prompt_attention(line) if opts.emphasis != "None" else [[line, 1.0]]
        tokenized = self.tokenize([text for text, _ in parsed])
        chunks, chunk, token_count = [], PromptChunk(), 0

        def next_chunk(is_last=False):
            nonlocal chunk, token_count
            token_count += len(chunk.tokens) if is_last else self.chunk_length
            pad = self.chunk_length - len(chunk.tokens)
            if pad > 0:
                chunk.tokens += [self.id_end] * pad
                chunk.multipliers += [1.0] * pad
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, (text, weight) in zip(tokenized, parsed):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            position = 0
            while position < len(tokens):
                if len(chunk.tokens) == self.chunk_length:
                    next_chunk()
                embedding, length = self.hijack.embedding_db.find_embedding_at_position(tokens, position)
                if embedding is None:
                    chunk.tokens.append(tokens[position])
                    chunk.multipliers.append(weight)
                    position += 1
                    continue
                n = int(embedding.vectors)
                if len(chunk.tokens) + n > self.chunk_length:
                    next_chunk()
                chunk.fixes.append(PromptChunkFix(len(chunk.tokens), embedding))
                chunk.tokens += [0] * n
                chunk.multipliers += [weight] * n
                position += length
        if chunk.tokens or not chunks:
            next_chunk(is_last=True)
        return chunks, token_count

    def process_texts(self, texts):
        cache, batch_chunks, token_count = {}, [], 0
        for line in texts:
            if line not in cache:
                cache[line], count = self.tokenize_line(line)
                token_count = max(count, token_count)
            batch_chunks.append(cache[line])
        return batch_chunks, token_count

    def forward(self, texts):
        batch_chunks, _ = self.process_texts(texts)
        zs = []
        for i in range(max(len(x) for x in batch_chunks)):
            batch_chunk = [c[i] if i < len(c) else self.empty_chunk() for c in batch_chunks]
            self.hijack.fixes = [x.fixes for x in batch_chunk]
            zs.append(self.process_tokens([x.tokens for x in batch_chunk], [x.multipliers for x in batch_chunk]))
        if self.return_pooled:
            return torch.hstack(zs), zs[0].pooled
        return torch.hstack(zs)

    def process_tokens(self, remade_batch_tokens, batch_multipliers):
        tokens = torch.asarray(remade_batch_tokens).to(devices.device)
        if self.id_end != self.id_pad:  # SD2/SDXL's OpenCLIP pads with 0 after the end token
            for b in range(len(remade_batch_tokens)):
                tokens[b, remade_batch_tokens[b].index(self.id_end) + 1:] = self.id_pad
        z = self.encode_with_transformers(tokens)
        pooled = getattr(z, "pooled", None)
        emphasis = sd_emphasis.get_current_option(opts.emphasis)()
        emphasis.tokens = remade_batch_tokens
        emphasis.multipliers = torch.asarray(batch_multipliers).to(devices.device)
        emphasis.z = z
        emphasis.after_transformers()
        z = emphasis.z
        if pooled is not None:
            z.pooled = pooled
        return z

    def encode_with_transformers(self, tokens):
        outputs = self.wrapped.transformer(input_ids=tokens, output_hidden_states=-opts.CLIP_stop_at_last_layers)
        if opts.CLIP_stop_at_last_layers > 1:
            z = outputs.hidden_states[-opts.CLIP_stop_at_last_layers]
            return self.wrapped.transformer.text_model.final_layer_norm(z)
        return outputs.last_hidden_state

    def encode_embedding_init_text(self, init_text, nvpt):
        layer = self.wrapped.transformer.text_model.embeddings
        ids = self.wrapped.tokenizer(init_text, max_length=nvpt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        return layer.token_embedding.wrapped(ids.to(layer.token_embedding.wrapped.weight.device)).squeeze(0)


class FrozenCLIPEmbedderForSDXLWithCustomWords(FrozenCLIPEmbedderWithCustomWords):
    def encode_with_transformers(self, tokens):
        outputs = self.wrapped.transformer(input_ids=tokens, output_hidden_states=self.wrapped.layer == "hidden")
        if opts.sdxl_clip_l_skip is True:
            return outputs.hidden_states[-opts.CLIP_stop_at_last_layers]
        if self.wrapped.layer == "last":
            return outputs.last_hidden_state
        return outputs.hidden_states[self.wrapped.layer_idx]
