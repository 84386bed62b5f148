"""Mirrors modules/sd_hijack.py (v1.10.1) for SD1 and SDXL: model_hijack holds the embedding
database; hijack(m) wraps each CLIP token embedding in EmbeddingsWithFixes (SDXL's OpenCLIP one
with textual_inversion_key 'clip_g') and each text encoder in the WebUI's wrapper (SD1: the cond
stage; SDXL: the conditioner's embedders, and the conditioner becomes cond_stage_model);
undo_hijack takes them off (SD1). Left out: attention optimisations, SD2/XLMR branches, circular
padding."""
import torch

from modules import devices, sd_hijack_clip
from modules.shared import cmd_opts


class StableDiffusionModelHijack:
    fixes = None
    clip = None

    def __init__(self):
        from modules.textual_inversion.textual_inversion import EmbeddingDatabase
        self.extra_generation_params = {}
        self.comments = []
        self.embedding_db = EmbeddingDatabase()
        self.embedding_db.add_embedding_dir(cmd_opts.embeddings_dir)

    def hijack(self, m):
        conditioner = getattr(m, "conditioner", None)
        if conditioner:
            from modules import sd_hijack_open_clip
            for i, embedder in enumerate(conditioner.embedders):
                typename = type(embedder).__name__
                if typename == "FrozenCLIPEmbedder":
                    emb = embedder.transformer.text_model.embeddings
                    emb.token_embedding = EmbeddingsWithFixes(emb.token_embedding, self)
                    conditioner.embedders[i] = sd_hijack_clip.FrozenCLIPEmbedderForSDXLWithCustomWords(embedder, self)
                if typename == "FrozenOpenCLIPEmbedder2":
                    embedder.model.token_embedding = EmbeddingsWithFixes(embedder.model.token_embedding, self,
                                                                         textual_inversion_key="clip_g")
                    conditioner.embedders[i] = sd_hijack_open_clip.FrozenOpenCLIPEmbedder2WithCustomWords(embedder, self)
            m.cond_stage_model = conditioner
            self.clip = m.cond_stage_model
            return
        emb = m.cond_stage_model.transformer.text_model.embeddings
        emb.token_embedding = EmbeddingsWithFixes(emb.token_embedding, self)
        m.cond_stage_model = sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords(m.cond_stage_model, self)
        self.clip = m.cond_stage_model

    def undo_hijack(self, m):
        if type(m.cond_stage_model) == sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords:
            m.cond_stage_model = m.cond_stage_model.wrapped
            emb = m.cond_stage_model.transformer.text_model.embeddings
            if type(emb.token_embedding) == EmbeddingsWithFixes:
                emb.token_embedding = emb.token_embedding.wrapped
        self.clip = None


class EmbeddingsWithFixes(torch.nn.Module):
    """The token embedding, with each fix's vectors spliced in after its offset."""

    def __init__(self, wrapped, embeddings, textual_inversion_key="clip_l"):
        super().__init__()
        self.wrapped = wrapped
        self.embeddings = embeddings
        self.textual_inversion_key = textual_inversion_key

    def forward(self, input_ids):
        batch_fixes = self.embeddings.fixes
        self.embeddings.fixes = None
        inputs_embeds = self.wrapped(input_ids)
        if batch_fixes is None or len(batch_fixes) == 0 or max(len(x) for x in batch_fixes) == 0:
            return inputs_embeds
        vecs = []
        for fixes, tensor in zip(batch_fixes, inputs_embeds):
            for offset, embedding in fixes:
                vec = embedding.vec[self.textual_inversion_key] if isinstance(embedding.vec, dict) else embedding.vec
                emb = devices.cond_cast_unet(vec)
                n = min(tensor.shape[0] - offset - 1, emb.shape[0])
                tensor = torch.cat([tensor[0:offset + 1], emb[0:n], tensor[offset + 1 + n:]]).to(dtype=inputs_embeds.dtype)
            vecs.append(tensor)
        return torch.stack(vecs)


model_hijack = None


def reset():
    """A fresh hijack object (the WebUI makes one at import)."""
    global model_hijack
    model_hijack = StableDiffusionModelHijack()
    return model_hijack
