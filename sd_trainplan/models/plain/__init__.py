"""SD1.x/SD2.x's and SDXL's UNet, VAE and CLIP text encoders in plain torch, for the standalone trainer
(issue 16).

Importing diffusers' and transformers' model code took 5-7 s on the GPU machine before a run's first
update (most of it torch._dynamo, which both import): more than loading the weights, encoding the
images and the first update together. These modules compute what `UNet2DConditionModel`,
`AutoencoderKL` (diffusers 0.31), `CLIPTextModel` and `CLIPTextModelWithProjection` (transformers
4.46) compute for the configs Stable Diffusion 1.x, 2.x and XL use, with the same module tree, so
their state dicts, LoRA targets, kohya, ldm and sgm names, exports and the adapter's calls are the
same as the library models'. They were written from the libraries' documented architecture and
checked against them (tests/test_plain_models.py, test_plain_sdxl.py: same weights, same outputs); no
library code is copied.

A folder whose configs ask for anything else (`unsupported`) loads with diffusers as before.
"""
