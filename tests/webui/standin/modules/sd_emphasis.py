"""Mirrors modules/sd_emphasis.py (v1.10.1): how (word:1.2) weights act on CLIP's output."""
import torch


class Emphasis:
    name = "Base"
    tokens = None
    multipliers: torch.Tensor = None
    z: torch.Tensor = None

    def after_transformers(self):
        pass


class EmphasisNone(Emphasis):
    name = "None"


class EmphasisIgnore(Emphasis):
    name = "Ignore"


class EmphasisOriginal(Emphasis):
    name = "Original"

    def after_transformers(self):
        original_mean = self.z.mean()
        self.z = self.z * self.multipliers.reshape(self.multipliers.shape + (1,)).expand(self.z.shape)
        self.z = self.z * (original_mean / self.z.mean())  # the WebUI keeps the mean


class EmphasisOriginalNoNorm(EmphasisOriginal):
    name = "No norm"

    def after_transformers(self):
        self.z = self.z * self.multipliers.reshape(self.multipliers.shape + (1,)).expand(self.z.shape)


options = [EmphasisNone, EmphasisIgnore, EmphasisOriginal, EmphasisOriginalNoNorm]


def get_current_option(name):
    return next((x for x in options if x.name == name), EmphasisOriginal)
