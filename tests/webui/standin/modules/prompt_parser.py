"""Mirrors parse_prompt_attention from modules/prompt_parser.py (v1.10.1): text -> [[text, weight]]
with (a) x1.1, [a] /1.1, (a:w) = w, \\( escapes, BREAK as ["BREAK", -1], neighbours of equal
weight merged. Written for these tests; the WebUI's docstring examples are its tests."""
import re

re_attention = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""", re.X)
re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text):
    res, round_open, square_open = [], [], []

    def scale(start, factor):
        for i in range(start, len(res)):
            res[i][1] *= factor

    for m in re_attention.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
        elif tok == "(":
            round_open.append(len(res))
        elif tok == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            scale(round_open.pop(), float(weight))
        elif tok == ")" and round_open:
            scale(round_open.pop(), 1.1)
        elif tok == "]" and square_open:
            scale(square_open.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(re_break.split(tok)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_open:
        scale(pos, 1.1)
    for pos in square_open:
        scale(pos, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    i = 0  # merge runs of equal weight
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res.pop(i + 1)[0]
        else:
            i += 1
    return res
