"""sd_trainplan: plan and run Stable Diffusion fine-tunes (Dreambooth, Textual Inversion, LoRA)."""
__version__ = "0.1.0"
