#!/usr/bin/python3
"""Write tests/golden/fixtures/tokenizer_text.tsv: what Python itself makes of
texts at the three text stages of OpenAI CLIP's tokenizer, for
tests/test_tokenizer.c to compare the C stages against.

    /usr/bin/python3 tests/golden/gen_tokenizer_text.py > tests/golden/fixtures/tokenizer_text.tsv

Lines are "stage<TAB>hex(UTF-8 input)<TAB>hex(UTF-8 expected)":
  clean  CLIP's basic_clean + whitespace_clean + lower, without ftfy:
         re.sub(r"\\s+", " ", html.unescape(html.unescape(t)).strip()).strip().lower()
  lower  str.lower() (every code point whose lowercase differs, in chunks,
         and Greek final-sigma contexts)
  split  CLIP's pattern; the pieces joined with U+0001. The `regex` module
         is not in Debian's Python, so \\p{L} and \\p{N} are spelled out as
         character classes from unicodedata and the pattern runs in `re`
         on lowercase text (IGNORECASE matters only for uppercase
         contractions, which the C test checks by hand).
Inputs are random mixtures (fixed seed) of the pieces that exercise each rule.
"""
import html
import html.entities
import random
import re
import sys
import unicodedata


def hexs(s):
    return s.encode("utf-8").hex()


def char_class(predicate):
    out, start = [], None
    for cp in range(0x110001):
        if cp <= 0x10FFFF and predicate(cp):
            if start is None:
                start = cp
        elif start is not None:
            a, b = start, cp - 1
            out.append(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else ""))
            start = None
    return "".join(out)


def clean(text):
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def main():
    rng = random.Random(20240501)
    letters = char_class(lambda c: unicodedata.category(chr(c)).startswith("L"))
    numbers = char_class(lambda c: unicodedata.category(chr(c)).startswith("N"))
    pattern = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[" + letters +
                         "]+|[" + numbers + "]|[^\\s" + letters + numbers + "]+")
    print(f"# Python {sys.version.split()[0]}, Unicode {unicodedata.unidata_version}: "
          "stage, hex(input), hex(expected)")

    names = sorted(html.entities.html5)
    clean_pieces = ["&", "&#", "&#x", ";", "amp", "lt", "Σ", "σ", "Α", "'", "\u0301", " ", "\t",
                    "\n", "\xa0", "\u3000", "\x1c", "İ", "A", "b", "1", "9", "x", "F", "ΟΔΟΣ",
                    "#", "&amp;", "ǅ", "ẞ", "\u200b", "\u2028", "é", "É", "😀", "0", "12",
                    "99999999999", "D800", "\r", "Ж"]
    for _ in range(500):
        parts = [rng.choice(clean_pieces + ["&" + rng.choice(names)]) for _ in range(rng.randint(0, 10))]
        text = "".join(parts)
        print(f"clean\t{hexs(text)}\t{hexs(clean(text))}")

    changing = [chr(c) for c in range(0x110000)
                if not 0xD800 <= c <= 0xDFFF and chr(c).lower() != chr(c)]
    for i in range(0, len(changing), 64):
        text = " ".join(changing[i:i + 64])
        print(f"lower\t{hexs(text)}\t{hexs(text.lower())}")
    sigma_pieces = ["Σ", "Α", "'", "\u0301", " ", ".", "1", "ß", "\u00ad", "A"]
    for _ in range(100):
        text = "".join(rng.choice(sigma_pieces) for _ in range(rng.randint(1, 6)))
        print(f"lower\t{hexs(text)}\t{hexs(text.lower())}")

    split_pieces = ["<|startoftext|>", "<|endoftext|>", "<|", "|>", "'", "s", "t", "re", "ve", "m",
                    "ll", "d", "a", "1", "²", "!", ".", " ", "é", "東", "😀", "\u0301", "\ufe0f",
                    "-", "_", "'s", "ー", "x", "\xa0", "\u3000", "<", "|", "startoftext", "Ⅻ", "٣"]
    for _ in range(500):
        text = "".join(rng.choice(split_pieces) for _ in range(rng.randint(0, 12)))
        print(f"split\t{hexs(text)}\t{hexs(chr(1).join(pattern.findall(text)))}")


if __name__ == "__main__":
    main()
