"""Stands for modules/processing.py (v1.10.1): only the conditioning caches that txt2img keeps
between generations (class attributes, lines 188-189 and 1183-1184)."""


class StableDiffusionProcessing:
    cached_uc = [None, None]
    cached_c = [None, None]


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    cached_hr_uc = [None, None]
    cached_hr_c = [None, None]
