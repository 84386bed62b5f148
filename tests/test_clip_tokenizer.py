"""Our CLIP tokenizer (models/clip_tokenizer.py) gives the ids transformers' CLIPTokenizer gives, on the
real CLIP vocabulary, for SD1's and SD2's folders (SD2 pads with '!'), with Textual Inversion's added
tokens, with and without ftfy, and through save_pretrained both ways."""
import json
import random
import sys

import pytest
from transformers import CLIPTokenizer

from sd_trainplan.models.clip_tokenizer import ClipTokenizer, load_folder
from sd_trainplan.models.clip_vocab import write_tokenizer_files
from sd_trainplan.models.diffusers_adapter import folder_tokenizer

PROMPTS = [
    "a photo of sks dog", "(masterpiece:1.2), best quality, ((sharp focus)), [blurry:0.8]",
    "a photo of [name] on the beach, <sks>, trending on artstation", "A Photo Of A DOG, 4K, HDR, 8k uhd",
    "Café naïve résumé, ÀÉÎÕÜ ç ß ø Å", "東京タワー 夜景 北京 한국어 文字 𠀀𠀁", "🐱🎨🔥 emoji 👩‍🚀 ❤️",
    "tab\there\nnew line\r\n  repeated    spaces\u3000ideographic", "It's a dog's life; don't, we're, I'll, you've, I'm, he'd",
    "12345 3.14159 x2 1920x1080 v1.5 ²³ ½ Ⅻ", "", "   ", "!", "hello!! world!!!", "?!?! ... --- ___ *** ###",
    "a, " * 60, "<|startoftext|> inside <|endoftext|> text", "&amp; &lt;tag&gt; &quot;quoted&quot;",
    "ﬁne ﬂower ＦＵＬＬ　ｗｉｄｔｈ “curly” ‘quotes’ — dash", "zero\u200bwidth soft\u00adhyphen bom\ufeff",
    "ctrl\x00\x07\x1b[31mred\x7f \ufffd replacement", "mixedCASE camelCase snake_case kebab-case UPPER",
    "word" * 40, "d'artagnan rock'n'roll 'quoted' ''", "line\u2028sep para\u2029sep nbsp\u00a0here",
]
TI = ["<sks>", "sks-1", "zwx", "zwx_1", "cat"]  # 'cat' is already a piece (of 'cats'): it keeps its id
OVERLAPPING = ["ks-", "x_", "<s", "a<sks>b"]  # added tokens inside others: transformers' Trie picks among them
TI_PROMPTS = [
    "a photo of <sks> dog", "a<sks>b", "<sks><sks>", "<SKS> <Sks>", "sks-1sks-12", "(<sks>:1.3), sks-1.",
    "zwx zwx_1 zwx_12 zwxzwx_1", "ZWX Zwx_1", "concatenate cats scat", "a [<sks>] {zwx}, 'zwx'", "<sks", "sks>",
]


def theirs(folder):
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def set_pad(folder, pad):
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps(dict(data, pad_token=pad)))
    return folder


def hub_layout(folder, pad):
    """The older files of the SD1.5/SD2.1 Hub folders: AddedToken dicts with "__type", no added_tokens_decoder."""
    write_tokenizer_files(folder)
    tok = {"lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    bos, eos = dict(tok, content="<|startoftext|>"), dict(tok, content="<|endoftext|>")
    typed = {k: dict(v, __type="AddedToken") for k, v in (("bos_token", bos), ("eos_token", eos), ("unk_token", eos))}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        dict(typed, add_prefix_space=False, do_lower_case=True, errors="replace", model_max_length=77, pad_token=pad,
             name_or_path="openai/clip-vit-large-patch14", special_tokens_map_file="./special_tokens_map.json",
             tokenizer_class="CLIPTokenizer")))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": bos, "eos_token": eos, "unk_token": eos, "pad_token": pad}))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    return {"sd1": write_tokenizer_files(root / "sd1"), "sd2": set_pad(write_tokenizer_files(root / "sd2"), "!"),
            "sd1-hub": hub_layout(root / "sd1-hub", "<|endoftext|>"), "sd2-hub": hub_layout(root / "sd2-hub", "!")}


@pytest.fixture(params=["ftfy", "no ftfy"])
def ftfy_mode(request, monkeypatch):
    """transformers' CLIPTokenizer cleans text with ftfy when it imports, else with BERT's BasicTokenizer."""
    if request.param == "no ftfy":
        monkeypatch.setitem(sys.modules, "ftfy", None)  # `import ftfy` raises ImportError
    return request.param


def assert_same(ours, ref, prompts):
    kw = dict(padding="max_length", max_length=ours.model_max_length, truncation=True, return_tensors="pt")
    assert ours(prompts, **kw).input_ids.tolist() == ref(prompts, **kw).input_ids.tolist()
    for p in prompts:
        assert ours(p, add_special_tokens=False).input_ids == ref(p, add_special_tokens=False).input_ids, repr(p)
        assert ours.tokenize(p) == ref.tokenize(p), repr(p)
    assert ours("a cat", padding="longest", return_tensors="pt").input_ids.tolist() == \
        ref("a cat", padding="longest", return_tensors="pt").input_ids.tolist()
    assert ours.get_vocab() == ref.get_vocab() and len(ours) == len(ref)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id, ours.unk_token_id, ours.model_max_length) == \
        (ref.bos_token_id, ref.eos_token_id, ref.pad_token_id, ref.unk_token_id, ref.model_max_length)


@pytest.mark.parametrize("kind", ["sd1", "sd2", "sd1-hub", "sd2-hub"])
def test_prompts_give_transformers_ids(folders, kind, ftfy_mode):
    ours, ref = load_folder(folders[kind]), theirs(folders[kind])
    assert_same(ours, ref, PROMPTS)
    long = ours(["word " * 100], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    assert long.shape == (1, 77) and long[0, 0] == ours.bos_token_id and long[0, -1] == ours.eos_token_id
    for limit in (1, 2, 3):  # too short for bos + eos: transformers leaves the ids whole
        assert ours("a b c", max_length=limit, truncation=True).input_ids == \
            ref("a b c", max_length=limit, truncation=True).input_ids
    if kind.startswith("sd2"):  # '!' pads, and is cut out of the text as transformers cuts its special tokens
        assert ours.pad_token_id == 0 and ours("hi!!", add_special_tokens=False).input_ids[-2:] == [0, 0]


@pytest.mark.parametrize("kind", ["sd1", "sd2-hub"])
def test_textual_inversion_tokens_are_cut_out_as_transformers_cuts_them(folders, kind):
    ours, ref = load_folder(folders[kind]), theirs(folders[kind])
    for tok in (ours, ref):
        assert tok.convert_tokens_to_ids("<sks>") == tok.unk_token_id and "<sks>" not in tok.get_vocab()
    assert ours.add_tokens(TI[:1]) == ref.add_tokens(TI[:1]) == 1
    assert ours.add_tokens(TI) == ref.add_tokens(TI) == len(TI) - 2
    assert ours.add_tokens("<sks>") == ref.add_tokens("<sks>") == 0
    assert ours.convert_tokens_to_ids(TI) == ref.convert_tokens_to_ids(TI)
    assert ours.convert_tokens_to_ids(TI[:4]) == list(range(49408, 49412))
    assert_same(ours, ref, TI_PROMPTS + PROMPTS)


def test_save_pretrained_round_trips_both_ways(folders, tmp_path):
    for kind in ("sd1", "sd2-hub"):
        ours, ref = load_folder(folders[kind]), theirs(folders[kind])
        for tok in (ours, ref):
            tok.add_tokens(TI[:3])
        ours.save_pretrained(tmp_path / f"{kind}-ours")
        ref.save_pretrained(tmp_path / f"{kind}-theirs")
        old = tmp_path / f"{kind}-before-4.34"  # as transformers < 4.34 saved: added_tokens.json is the record
        ref.save_pretrained(old)
        config = json.loads((old / "tokenizer_config.json").read_text())
        del config["added_tokens_decoder"]
        (old / "tokenizer_config.json").write_text(json.dumps(config))
        for saved in (tmp_path / f"{kind}-ours", tmp_path / f"{kind}-theirs", old):
            assert_same(load_folder(saved), ref, TI_PROMPTS + PROMPTS[:8])
            assert_same(load_folder(saved), theirs(saved), TI_PROMPTS + PROMPTS[:8])


def random_text(rng: random.Random) -> str:
    pools = ["abcxyzABCXYZ", "0123456789", " \t\n\r  ", ".,;:!?'\"()[]{}<>-_/\\|@#$%^&*~`+=", "éèêëàçñøßÀÉÎ",
             "\u0301\u0308\u0327", "東京北京文字漢", "한국어", "ひらがなカタカナ", "🐱🎨🔥👩\u200d🚀❤\ufe0f",
             "\x00\x07\x1b\x7f\x85\u200b\u2028\ufeff\ufffd\u00ad\u3000", "ﬁﬂＡＢｃ“”‘’—", "&amp;&lt;",
             ]
    words = TI + OVERLAPPING + ["<|endoftext|>", "<|startoftext|>", "'s", "'t", "'re"]
    out = []
    for _ in range(rng.randint(0, 12)):
        out.append(rng.choice(words) if rng.random() < 0.15 else "".join(
            rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 6))))
    return "".join(rng.choice(["", " ", "  "]) + w for w in out)


@pytest.mark.parametrize("n", [300])
def test_random_unicode_gives_transformers_ids(folders, ftfy_mode, n):
    ours, ref = load_folder(folders["sd2-hub"]), theirs(folders["sd2-hub"])
    for tok in (ours, ref):
        tok.add_tokens(TI + OVERLAPPING)
    rng = random.Random(16)
    texts = [random_text(rng) for _ in range(n)]
    for t in texts:
        assert ours(t).input_ids == ref(t).input_ids, repr(t)


def test_folder_tokenizer_is_ours_for_a_clip_folder_and_transformers_otherwise(folders, tmp_path):
    root = tmp_path / "model"
    write_tokenizer_files(root / "tokenizer")
    assert isinstance(folder_tokenizer(root), ClipTokenizer)
    config = json.loads((root / "tokenizer" / "tokenizer_config.json").read_text())
    for other in ({"tokenizer_class": "SomeOtherTokenizer"}, {"additional_special_tokens": ["<x>"]},
                  {"padding_side": "left"}):
        (root / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(dict(config, **other)))
        assert load_folder(root / "tokenizer") is None
    (root / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(dict(config, padding_side="left")))
    assert isinstance(folder_tokenizer(root), CLIPTokenizer)


def test_sdxl_second_tokenizer_reads_the_text_as_its_saved_folder_does(tmp_path):
    """The tiny SDXL's second tokenizer pads with "!" (SDXL's tokenizer_2). Its "!" is a special token
    once saved and loaded back (by transformers and by us): in memory it must read a prompt's "!" the
    same way, or a model trained in memory would be conditioned differently after its export."""
    from sd_trainplan.models.sdxl_diffusers import sdxl_tokenizers
    _, tok2 = sdxl_tokenizers()
    tok2.save_pretrained(str(tmp_path))
    theirs, ours = CLIPTokenizer.from_pretrained(str(tmp_path)), load_folder(tmp_path)
    for prompt in ["a photo!", "!!", "hello !! world", "zwx dog, wow!!!"]:
        ids = tok2(prompt, padding="max_length", max_length=77, truncation=True)["input_ids"]
        assert ids == theirs(prompt, padding="max_length", max_length=77, truncation=True)["input_ids"], prompt
        assert ids == ours(prompt, padding="max_length", max_length=77, truncation=True)["input_ids"], prompt
    assert tok2.pad_token_id == 0
