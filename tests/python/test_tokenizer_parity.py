"""Parity of `xdistill tokenizer encode/decode` with Hugging Face `tokenizers`.

For each fixture tokenizer (Llama-3, Qwen3, cl100k) the C++ ids must equal the
`tokenizers` ids on a generated corpus of more than 5 MB, and decoding must give
back the text wherever Hugging Face's own round trip does. Variants of the
fixtures exercise a BOS-adding post-processor and the lstrip / rstrip /
normalized / single_word flags of added tokens.
"""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from test_tokenizer_corpus import SPECIAL_STRINGS, build_corpus, specials, prose  # noqa: E402

def _fixtures():
    source = Path(os.environ.get("XD_SOURCE_DIR", Path(__file__).parents[2]))
    candidates = [os.environ.get("XD_TOKENIZER_FIXTURES"), source / "shared/fixtures/tokenizers",
                  source.parent / "shared/fixtures/tokenizers", "/work/shared/fixtures/tokenizers"]
    for c in candidates:
        if c and (Path(c) / "llama3/tokenizer.json").exists():
            return Path(c)
    raise RuntimeError("tokenizer fixtures not found; set XD_TOKENIZER_FIXTURES")


FIXTURES = _fixtures()
NAMES = ["llama3", "qwen3", "cl100k"]


def binary():
    path = os.environ.get("XDISTILL_BIN")
    if not path or not Path(path).exists():
        pytest.fail("XDISTILL_BIN must point at the built xdistill binary")
    return path


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def run(*args):
    result = subprocess.run([binary(), *args], capture_output=True, text=True)
    assert result.returncode == 0, f"xdistill {' '.join(args)} failed:\n{result.stderr}"
    return result


def cpp_encode(tok_dir, texts, tmp_path, no_special=False, tag="enc"):
    src, dst = tmp_path / f"{tag}_in.jsonl", tmp_path / f"{tag}_out.jsonl"
    write_jsonl(src, ({"text": t} for t in texts))
    args = ["tokenizer", "encode", "--tokenizer", str(tok_dir), "--input", str(src), "--output", str(dst)]
    run(*(args + (["--no-special"] if no_special else [])))
    return [row["ids"] for row in read_jsonl(dst)]


def cpp_decode(tok_dir, id_lists, tmp_path, tag="dec"):
    src, dst = tmp_path / f"{tag}_in.jsonl", tmp_path / f"{tag}_out.jsonl"
    write_jsonl(src, ({"ids": ids} for ids in id_lists))
    run("tokenizer", "decode", "--tokenizer", str(tok_dir), "--input", str(src), "--output", str(dst))
    return [row["text"] for row in read_jsonl(dst)]


def first_mismatch(texts, ours, theirs, hf):
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            pos = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            lo = max(0, pos - 3)
            return (f"document {i} ({len(texts[i])} chars), first difference at token {pos}:\n"
                    f"  ours   {a[lo:pos + 5]} {[hf.id_to_token(t) for t in a[lo:pos + 5]]}\n"
                    f"  theirs {b[lo:pos + 5]} {[hf.id_to_token(t) for t in b[lo:pos + 5]]}\n"
                    f"  text near it: {hf.decode(b[max(0, pos - 8):pos + 8])!r}")
    return None


def assert_same_ids(texts, ours, theirs, hf):
    assert len(ours) == len(theirs), f"{len(ours)} output lines for {len(texts)} inputs"
    problem = first_mismatch(texts, ours, theirs, hf)
    assert problem is None, problem


@pytest.fixture(scope="module")
def corpus():
    return build_corpus()


@pytest.mark.parametrize("name", NAMES)
def test_encode_decode_parity(name, corpus, tmp_path):
    tok_dir = FIXTURES / name
    hf = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    theirs = [e.ids for e in hf.encode_batch(corpus, add_special_tokens=True)]
    ours = cpp_encode(tok_dir, corpus, tmp_path)
    assert_same_ids(corpus, ours, theirs, hf)

    # Without special tokens, on a slice (these fixtures' post-processors add none).
    part = corpus[:200]
    theirs_plain = [e.ids for e in hf.encode_batch(part, add_special_tokens=False)]
    assert_same_ids(part, cpp_encode(tok_dir, part, tmp_path, no_special=True, tag="plain"), theirs_plain, hf)

    # Decoding: equal to Hugging Face's decode, hence to the text where it round-trips.
    decoded = cpp_decode(tok_dir, ours, tmp_path)
    hf_decoded = hf.decode_batch(theirs, skip_special_tokens=False)
    for i, (text, mine, ref) in enumerate(zip(corpus, decoded, hf_decoded)):
        assert mine == ref, f"document {i}: decode differs from Hugging Face"
        if ref == text:
            assert mine == text


def test_decode_partial_characters(tmp_path):
    """Ids that split a multi-byte character decode to U+FFFD exactly as in Hugging Face."""
    tok_dir = FIXTURES / "llama3"
    hf = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    ids = hf.encode("日本語 🦄 emoji 👨‍👩‍👧‍👦", add_special_tokens=False).ids
    cases = [ids[:k] for k in range(1, len(ids) + 1)] + [ids[k:] for k in range(len(ids))]
    cases += [[128000, 128001] + ids, [ids[-1]] * 3]
    ours = cpp_decode(tok_dir, cases, tmp_path)
    assert ours == hf.decode_batch(cases, skip_special_tokens=False)


def variant(tmp_path, base, name, edit):
    """A copy of a fixture with an edited tokenizer.json."""
    spec = json.loads((FIXTURES / base / "tokenizer.json").read_text(encoding="utf-8"))
    edit(spec)
    out = tmp_path / name
    out.mkdir()
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return out


def llama3_with_bos(spec):
    # What the released Llama-3 tokenizer.json carries: ByteLevel + a BOS template.
    spec["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                  {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                  {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000],
                                                  "tokens": ["<|begin_of_text|>"]}}}]}


def qwen3_with_flags(spec):
    flags = {"<|im_start|>": {"lstrip": True}, "<|im_end|>": {"rstrip": True},
             "<think>": {"normalized": True}, "</think>": {"single_word": True, "lstrip": True, "rstrip": True},
             "<tool_call>": {"normalized": True, "rstrip": True}}
    for token in spec["added_tokens"]:
        token.update(flags.get(token["content"], {}))


@pytest.mark.parametrize("base,edit", [("llama3", llama3_with_bos), ("qwen3", qwen3_with_flags)])
def test_variant_parity(base, edit, corpus, tmp_path):
    tok_dir = variant(tmp_path, base, base + "_variant", edit)
    hf = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    import random
    rng = random.Random(5)
    texts = corpus[:150] + [specials(rng, 30) + prose(rng, 20) for _ in range(300)]
    texts += ["", " ", "<think>", " <|im_start|> ", "a</think>b", " </think> ", "x\t<|im_end|>\n\ny"]
    for add_special in (True, False):
        theirs = [e.ids for e in hf.encode_batch(texts, add_special_tokens=add_special)]
        ours = cpp_encode(tok_dir, texts, tmp_path, no_special=not add_special, tag=f"v{add_special}")
        assert_same_ids(texts, ours, theirs, hf)


def test_edge_texts(tmp_path):
    """Small texts at the edges of the regex and normaliser semantics."""
    texts = ["", " ", "  ", "\n", "a", "'s", "'ſ", "'S'LL", "don't", "I'M", "x\u180ey", "\u180e \u180e",
             "a\u00a0b", "\u3000\u3000x", "1234567", "١٢٣٤", "e\u0301", "\u1100\u1161", "\ufeffBOM",
             "tab\t\tend", "cr\r\rlf\r\n", "<|endoftext|><|endoftext|>", "<|im_start|>user\nhi<|im_end|>",
             "\U0001F600" * 50, "\x00\x01\x7f", "\U000E0041", "\uFFFD", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ǅ ǈ ǋ", "ǲ"]
    texts += [chr(c) + " " + chr(c) * 3 + "a1" for c in range(0x00A0, 0x0800, 7)]
    for name in NAMES:
        tok_dir = FIXTURES / name
        hf = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        theirs = [e.ids for e in hf.encode_batch(texts, add_special_tokens=True)]
        assert_same_ids(texts, cpp_encode(tok_dir, texts, tmp_path, tag=name), theirs, hf)


def test_malformed_line_names_file_and_line(tmp_path):
    src, dst = tmp_path / "bad.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"text": "fine"}\n{"text": "broken\n', encoding="utf-8")
    result = subprocess.run([binary(), "tokenizer", "encode", "--tokenizer", str(FIXTURES / "cl100k"),
                             "--input", str(src), "--output", str(dst)], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{src}:2" in result.stderr and "malformed JSON" in result.stderr
    assert not dst.exists()
    src.write_text('{"ids": [1, 2]}\n{"ids": [1, "x"]}\n', encoding="utf-8")
    result = subprocess.run([binary(), "tokenizer", "decode", "--tokenizer", str(FIXTURES / "cl100k"),
                             "--input", str(src), "--output", str(dst)], capture_output=True, text=True)
    assert result.returncode == 1 and f"{src}:2" in result.stderr
