"""A deterministic, varied text corpus for tokenizer parity tests and benchmarks.

`build_corpus(seed, target_bytes)` returns a list of documents mixing English
prose, source code, numbers and digit runs, whitespace runs (tabs, CR/LF,
Unicode spaces), CJK, Arabic, Devanagari, emoji, special-token strings,
Unicode that normalisation changes, and very long words. Nothing is downloaded.
The tests in this file check the generator itself (determinism, size, content).
"""
import random

WORDS = (
    "the of and to in is was he for it with as his on be at by had are but from or have an they which one "
    "you were her all she there would their we him been has when who will more no if out so said what up its "
    "about into than them can only other new some could time these two may then do first any my now such like "
    "our over man me even most made after also did many before must through back years where much your way "
    "well down should because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while last might us "
    "great old year off come since against go came right used take three tokenizer distillation gradient "
    "transformer attention memory matrix throughput latency benchmark parity merge vocabulary encoding"
).split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "'ſ", "’s"]
SPECIAL_STRINGS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>", "<|reserved_special_token_5|>",
    "<|reserved_special_token_250|>", "<|im_sta", "<|endoftext|", "<|", "|>", "<<|im_end|>>", "<|vision_pad|>",
]
EMOJI = [
    "😀", "😂", "🥲", "👍", "👍🏽", "🙏🏿", "❤️", "🔥", "🚀", "🇩🇪", "🇯🇵", "🏳️‍🌈", "👨‍👩‍👧‍👦", "🧑‍💻", "1️⃣", "#️⃣",
    "✅", "⚠️", "🤖", "🦄", "🍕", "🎉", "©️", "™", "🫠", "🪿",
]
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\u180e", "\x0b",
              "\x0c", "\x85", "\u2003", "\u202f", "\u205f", " \n", "\t\n", "\r"]
CODE = [
    "def {n}(x, y=None):\n    \"\"\"Return {w}.\"\"\"\n    if y is None:\n        return x * {d}\n    return x + y  # {w}\n",
    "for (int i = 0; i < {d}; ++i) {{\n\tsum += a[i] * b[i];\n\tif (sum > 0x{h}) break;\n}}\n",
    "const {n} = async (req, res) => {{\n  const data = await fetch(`/api/{w}?id=${{req.id}}`);\n  return res.json({{ ok: true, n: {d} }});\n}};\n",
    "#include <vector>\nstd::vector<float> {n}(size_t n) {{ return std::vector<float>(n, {d}.5f); }}\n",
    "SELECT {w}, COUNT(*) AS n FROM t_{n} WHERE x >= {d} GROUP BY {w} ORDER BY n DESC;\n",
    "    {n}_list = [{d}, {d}, {d}]\n    print(f\"{{{n}_list!r:>10}}\")\n\n\n",
    "<div class=\"{w}\">\n  <span id='{n}'>{d}&nbsp;&lt;{w}&gt;</span>\n</div>\n",
    "fn {n}(v: &[u8]) -> Result<usize, Error> {{ Ok(v.iter().filter(|&&b| b == b'\\n').count() + {d}) }}\n",
]
LATIN_EXTRA = "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœŒÆØÅÄÖÜĳſﬁﬂ"
GREEK_CYRILLIC = "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΩабвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЖЯ"
DECOMPOSED = ["e\u0301", "a\u0308", "n\u0303", "\u1100\u1161\u11a8", "A\u030a", "o\u0302\u0301", "\u212b", "\u2126"]


def _word(rng):
    w = rng.choice(WORDS)
    r = rng.random()
    if r < 0.1:
        w = w.capitalize()
    elif r < 0.13:
        w = w.upper()
    return w


def prose(rng, n_words):
    out = []
    for i in range(n_words):
        w = _word(rng)
        if rng.random() < 0.05:
            w += rng.choice(CONTRACTIONS)
        if rng.random() < 0.08:
            w += rng.choice([",", ".", ";", ":", "!", "?", "...", ")", "\"", "'"])
        out.append(w)
        if rng.random() < 0.03:
            out.append("\n\n" if rng.random() < 0.5 else "\n")
    return " ".join(out)


def code(rng, n_snippets):
    parts = []
    for _ in range(n_snippets):
        parts.append(rng.choice(CODE).format(n=_word(rng).lower() + str(rng.randint(0, 99)), w=_word(rng),
                                             d=rng.randint(0, 10**rng.randint(1, 9)), h="%X" % rng.randint(0, 2**32)))
    return "".join(parts)


def numbers(rng, n):
    out = []
    for _ in range(n):
        kind = rng.randint(0, 5)
        if kind == 0:
            out.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40))))
        elif kind == 1:
            out.append(f"{rng.randint(0, 10**9):,}.{rng.randint(0, 99):02d}")
        elif kind == 2:
            out.append(f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}")
        elif kind == 3:
            out.append(f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
        elif kind == 4:
            out.append(f"+{rng.randint(1, 99)} ({rng.randint(100, 999)}) {rng.randint(1000000, 9999999)}")
        else:
            out.append("".join(chr(0x0660 + rng.randint(0, 9)) for _ in range(rng.randint(1, 8))) + "/" +
                       "".join(chr(0x0966 + rng.randint(0, 9)) for _ in range(rng.randint(1, 8))))
    return " ".join(out)


def whitespace(rng, n):
    return "".join(rng.choice(WHITESPACE) * rng.randint(1, 12) + rng.choice(["x", "Word", "1", ".", ""])
                   for _ in range(n))


def _script_words(rng, n, make):
    return " ".join(make() for _ in range(n))


def cjk(rng, n):
    def chunk():
        lo, hi = rng.choice([(0x4E00, 0x9FFF), (0x3041, 0x3096), (0x30A1, 0x30FA), (0xAC00, 0xD7A3)])
        s = "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 30)))
        return s + rng.choice(["，", "。", "！", "？", "「", "」", "、", "", ""])
    return "".join(chunk() for _ in range(n))


def arabic(rng, n):
    def word():
        s = ""
        for _ in range(rng.randint(2, 9)):
            s += chr(rng.randint(0x0621, 0x064A))
            if rng.random() < 0.2:
                s += chr(rng.randint(0x064B, 0x0652))
        return s
    return _script_words(rng, n, word) + rng.choice(["،", "؟", ".", ""])


def devanagari(rng, n):
    def word():
        s = ""
        for _ in range(rng.randint(1, 5)):
            s += chr(rng.randint(0x0915, 0x0939))
            r = rng.random()
            if r < 0.4:
                s += chr(rng.randint(0x093E, 0x094C))
            elif r < 0.55:
                s += "\u094d"
        return s
    return _script_words(rng, n, word) + rng.choice(["।", "॥", ""])


def emoji(rng, n):
    return "".join(rng.choice(EMOJI) + rng.choice(["", "", " ", "\n", "a", "!"]) for _ in range(n))


def specials(rng, n):
    return "".join(rng.choice(["", " ", "\n", "x", "  ", "Hello "]) + rng.choice(SPECIAL_STRINGS) +
                   rng.choice(["", " ", "\n", "y", "\n\n"]) for _ in range(n))


def unicode_mix(rng, n):
    pool = [lambda: rng.choice(LATIN_EXTRA), lambda: rng.choice(GREEK_CYRILLIC), lambda: rng.choice(DECOMPOSED),
            lambda: chr(rng.randint(0x1D400, 0x1D7FF)), lambda: chr(rng.randint(0xFF01, 0xFF5E)),
            lambda: chr(rng.randint(0x2200, 0x22FF)), lambda: " "]
    return "".join(rng.choice(pool)() for _ in range(n))


def long_word(rng):
    n = rng.choice([300, 1000, 5000, 20000, 60000])
    kind = rng.randint(0, 7)
    if kind == 0:
        return "a" * n
    if kind == 1:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))
    if kind == 2:
        return "".join(rng.choice("0123456789") for _ in range(n))
    if kind == 3:
        return " " * n + "end"
    if kind == 4:
        return "=" * n
    if kind == 5:
        return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(n))
    if kind == 6:
        return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(n // 3))
    return "\n" * (n // 10) + "\t" * (n // 10)


GENERATORS = [
    (0.30, lambda rng: prose(rng, rng.randint(20, 600))),
    (0.15, lambda rng: code(rng, rng.randint(1, 12))),
    (0.07, lambda rng: numbers(rng, rng.randint(5, 80))),
    (0.06, lambda rng: whitespace(rng, rng.randint(5, 60))),
    (0.08, lambda rng: cjk(rng, rng.randint(5, 80))),
    (0.06, lambda rng: arabic(rng, rng.randint(5, 120))),
    (0.06, lambda rng: devanagari(rng, rng.randint(5, 120))),
    (0.05, lambda rng: emoji(rng, rng.randint(5, 80))),
    (0.07, lambda rng: specials(rng, rng.randint(1, 20))),
    (0.07, lambda rng: unicode_mix(rng, rng.randint(10, 300))),
    (0.03, long_word),
]


def document(rng, long_words=True):
    """One document: a few sections of different kinds glued with varied separators."""
    generators = GENERATORS if long_words else [g for g in GENERATORS if g[1] is not long_word]
    weights = [w for w, _ in generators]
    parts = []
    for _ in range(rng.randint(1, 6)):
        gen = rng.choices(generators, weights=weights)[0][1]
        parts.append(gen(rng))
    seps = ["", " ", "\n", "\n\n", "\t", "  ", "\r\n"]
    return "".join(p + rng.choice(seps) for p in parts)


def build_corpus(seed=20240607, target_bytes=5_500_000, long_words=True):
    """Documents until target_bytes of UTF-8; long_words=False leaves out the very long words."""
    rng = random.Random(seed)
    docs, size = [], 0
    while size < target_bytes:
        d = document(rng, long_words)
        docs.append(d)
        size += len(d.encode("utf-8"))
    return docs


def test_corpus_is_deterministic_and_varied():
    a = build_corpus(seed=7, target_bytes=300_000)
    b = build_corpus(seed=7, target_bytes=300_000)
    assert a == b
    full = build_corpus()
    text = "".join(full)
    assert len(text.encode("utf-8")) >= 5_000_000
    for needle in ["def ", "<|im_start|>", "<|begin_of_text|>", "\t", "\r\n", "\u3000", "😀"]:
        assert needle in text, needle
    assert any(0x4E00 <= ord(c) <= 0x9FFF for c in text)
    assert any(0x0621 <= ord(c) <= 0x064A for c in text)
    assert any(0x0915 <= ord(c) <= 0x0939 for c in text)
    assert max(len(w) for d in full for w in d.split()) >= 20000
