"""Chat rendering of `xdistill tokenizer chat` against transformers' apply_chat_template.

Llama-3 and Qwen3 use the fixtures' own tokenizer_config.json. OLMo-2 ships no
fixture: its instruct template (tests/tokenizer/chat_templates/olmo2.jinja,
written from the published OLMo-2-Instruct format) is installed on the cl100k
tokenizer, which OLMo-2 uses. A plain ChatML template is tested the same way.
The text and the ids must be identical; the assistant mask must cover exactly
each assistant reply and its end-of-turn token (plus a token that straddles
the header and the reply, such as "\\n\\n").
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent))
from test_tokenizer_parity import FIXTURES, binary, read_jsonl, write_jsonl  # noqa: E402

SOURCE = Path(os.environ.get("XD_SOURCE_DIR", Path(__file__).parents[2]))
TEMPLATES = SOURCE / "tests/tokenizer/chat_templates"

SYSTEM = {"role": "system", "content": "You are a careful assistant. Answer briefly."}
CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [SYSTEM, {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."}],
    [{"role": "user", "content": "  Trim me \n"}, {"role": "assistant", "content": "\nSure: trimmed.  "},
     {"role": "user", "content": "Again, in 日本語 please 🙏"}, {"role": "assistant", "content": "もちろん。"}],
    [SYSTEM, {"role": "user", "content": "Write code"},
     {"role": "assistant", "content": "```python\nprint('hi')\n```\n"}, {"role": "user", "content": "Thanks"}],
    [{"role": "user", "content": "Think first"},
     {"role": "assistant", "content": "<think>\nreasoning here\n</think>\n\nThe answer is 42."},
     {"role": "user", "content": "And then?"},
     {"role": "assistant", "content": "<think>more</think>Done."}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "Tabs\tand\n\nnewlines  "},
     {"role": "assistant", "content": "<|endoftext|> is a special string"}],
]


def tokenizer_dir(tmp_path, name):
    if name in ("llama3", "qwen3"):
        return FIXTURES / name
    base = {"olmo2": "cl100k", "chatml": "qwen3"}[name]
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / base / "tokenizer.json", out / "tokenizer.json")
    config = json.loads((FIXTURES / base / "tokenizer_config.json").read_text())
    config.pop("added_tokens_decoder", None)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = (TEMPLATES / f"{name}.jinja").read_text()
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def hf_render(tok, messages, generation):
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return text, list(ids)


def expected_assistant_spans(name, messages, tok):
    """What the mask must cover, per format: each reply as rendered, plus its end-of-turn token."""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        if name == "llama3":
            spans.append(m["content"].strip() + "<|eot_id|>")
        elif name == "olmo2":
            spans.append(m["content"] + tok.eos_token)
        elif name == "chatml":
            spans.append(m["content"] + "<|im_end|>")
        else:  # qwen3: the rendered reply up to <|im_end|>, taken from the rendered text
            spans.append(None)
    return spans


@pytest.mark.parametrize("name", ["llama3", "qwen3", "olmo2", "chatml"])
def test_chat_matches_transformers(name, tmp_path):
    tok_dir = tokenizer_dir(tmp_path, name)
    hf = AutoTokenizer.from_pretrained(str(tok_dir))
    rows, expected = [], []
    for messages in CONVERSATIONS:
        for generation in (False, True):
            rows.append({"messages": messages, "add_generation_prompt": generation})
            expected.append(hf_render(hf, messages, generation))
    src, dst = tmp_path / "chat_in.jsonl", tmp_path / "chat_out.jsonl"
    write_jsonl(src, rows)
    result = subprocess.run([binary(), "tokenizer", "chat", "--tokenizer", str(tok_dir), "--input", str(src),
                             "--output", str(dst)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for row, out, (text, ids) in zip(rows, read_jsonl(dst), expected):
        assert out["text"] == text, f"{name}: rendered text differs for {row}"
        assert out["ids"] == ids, f"{name}: ids differ for {row}"
        mask = out["assistant_mask"]
        assert len(mask) == len(ids)
        # Contiguous masked runs, decoded, are the assistant replies in order.
        runs, current = [], []
        for token, m in zip(ids, mask):
            if m:
                current.append(token)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        got = [hf.decode(r) for r in runs]
        want = expected_assistant_spans(name, row["messages"], hf)
        assert len(got) == len(want), f"{name}: {len(got)} masked runs for {len(want)} replies: {got}"
        for g, w in zip(got, want):
            if w is None:
                assert g.endswith("<|im_end|>") and g in text
            else:  # a token may straddle the header and the reply: then it is masked too
                assert g.endswith(w) and len(g) - len(w) <= 4, (g, w)


def test_chat_format_by_name(tmp_path):
    """The OLMo-2 renderer is also selectable by name on a tokenizer without a template."""
    tok_dir = tokenizer_dir(tmp_path, "olmo2")
    hf = AutoTokenizer.from_pretrained(str(tok_dir))
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tok_dir / "tokenizer.json", bare / "tokenizer.json")
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    messages = CONVERSATIONS[1]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [{"messages": messages}])
    args = [binary(), "tokenizer", "chat", "--tokenizer", str(bare), "--input", str(src), "--output", str(dst)]
    failed = subprocess.run(args, capture_output=True, text=True)
    assert failed.returncode == 1 and "chat_template" in failed.stderr
    subprocess.run(args + ["--format", "olmo2", "--add-generation-prompt"], check=True, capture_output=True)
    assert read_jsonl(dst)[0]["text"] == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
