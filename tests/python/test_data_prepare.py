"""`xdistill data prepare` / `data inspect` end to end, against Hugging Face `tokenizers`
and `transformers` as the references for token ids and chat rendering, Python's own
UTF-8 decoder for the invalid-UTF-8 policy, and hashlib for the manifest checksums."""
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

BIN = os.environ.get("XDISTILL_BIN", "")
_SOURCE = Path(os.environ.get("XD_SOURCE_DIR", Path(__file__).parents[2]))
# The fixtures sit beside the checkout; a copy inside it (shared/, git-ignored) is what
# travels to the GPU machine.
TOKENIZERS = next((p for p in (Path(os.environ.get("XD_TOKENIZER_FIXTURES", "/nonexistent")),
                               _SOURCE.parent / "shared/fixtures/tokenizers",
                               _SOURCE / "shared/fixtures/tokenizers",
                               Path("/work/shared/fixtures/tokenizers")) if p.exists()),
                  _SOURCE.parent / "shared/fixtures/tokenizers")
LLAMA3 = TOKENIZERS / "llama3"
QWEN3 = TOKENIZERS / "qwen3"

pytestmark = pytest.mark.skipif(not BIN or not Path(BIN).exists(), reason="XDISTILL_BIN not built")


def hf_tokenizer(path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json"))


def run(args, env_extra=None, expect_rc=0):
    env = dict(os.environ, XDISTILL_PLAIN_PROGRESS="1")
    env.update(env_extra or {})
    proc = subprocess.run([BIN, *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == expect_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def prepare(tmp, inputs, output, extra=None, sets=(), env_extra=None, expect_rc=0, tokenizer=LLAMA3):
    recipe = {"tokenizer": str(tokenizer), "output": str(output), "inputs": inputs}
    recipe.update(extra or {})
    path = Path(tmp) / f"recipe_{Path(output).name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    args = ["data", "prepare", "--config", str(path)]
    for s in sets:
        args += ["--set", s]
    return run(args, env_extra, expect_rc)


def read_set(directory):
    """Tokens, mask and per-shard document offsets of a shard set, checking every checksum."""
    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    tokens, mask, docs = [], [], []
    for shard in manifest["shards"]:
        for key in ("tokens_file", "docs_file", "mask_file"):
            data = (directory / shard[key]["file"]).read_bytes()
            assert len(data) == shard[key]["bytes"]
            assert hashlib.sha256(data).hexdigest() == shard[key]["sha256"]
        tokens.append(np.fromfile(directory / shard["tokens_file"]["file"], dtype="<u4"))
        mask.append(np.fromfile(directory / shard["mask_file"]["file"], dtype="u1"))
        docs.append(np.fromfile(directory / shard["docs_file"]["file"], dtype="<u8"))
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)
    return manifest, cat(tokens, np.uint32), cat(mask, np.uint8), docs


def tree_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir())}


TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Grüße aus Köln — 東京 🚀 and some code: def f(x): return x**2\n\n  indented",
    "Numbers 1234567 and    spaces\ttabs.",
    "<|begin_of_text|> special tokens inside text are recognised",
]


def test_jsonl_and_text_match_hf_tokenizer(tmp_path):
    hf = hf_tokenizer(LLAMA3)
    eos = hf.token_to_id("<|end_of_text|>")
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "meta": i}) + "\n" for i, t in enumerate(TEXTS)))
    text_file = tmp_path / "notes.txt"
    text_file.write_text("paragraph one\nline two\n\nparagraph two\n")
    out = tmp_path / "set"
    prepare(tmp_path, [{"path": str(jsonl)}, {"path": str(text_file), "text_split": "paragraph"}], out)

    manifest, tokens, mask, docs = read_set(out)
    documents = TEXTS + ["paragraph one\nline two", "paragraph two"]
    expected = [hf.encode(t).ids + [eos] for t in documents]
    assert tokens.tolist() == [i for doc in expected for i in doc]
    assert mask.tolist() == [1] * len(tokens)
    assert manifest["documents"] == len(documents) and manifest["tokens"] == len(tokens)
    assert manifest["tokenizer"]["eos_id"] == eos
    assert manifest["tokenizer"]["vocab_size"] >= hf.get_vocab_size(with_added_tokens=True)
    assert manifest["eos_appended"] is True
    assert docs[0].tolist() == np.concatenate([[0], np.cumsum([len(d) for d in expected])]).tolist()
    assert manifest["stats"]["inputs"][0]["documents"] == len(TEXTS)

    inspected = run(["data", "inspect", str(out), "--verify"]).stdout
    assert "verify         ok" in inspected and f"tokens         {len(tokens)}" in inspected


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd command not installed")
def test_zstd_input_equals_plain_input(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 50))
    subprocess.run(["zstd", "-q", "-19", str(jsonl), "-o", str(tmp_path / "docs.jsonl.zst")], check=True)
    prepare(tmp_path, [{"path": str(jsonl)}], tmp_path / "plain")
    prepare(tmp_path, [{"path": str(tmp_path / "docs.jsonl.zst")}], tmp_path / "zst")
    assert np.array_equal(read_set(tmp_path / "plain")[1], read_set(tmp_path / "zst")[1])


def test_chat_matches_transformers_template_with_assistant_mask(tmp_path):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(QWEN3))
    conversations = [
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
         {"role": "assistant", "content": "Goodbye."}],
    ]
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    out = tmp_path / "chat_set"
    prepare(tmp_path, [{"path": str(chat), "format": "chat"}], out, tokenizer=QWEN3)
    manifest, tokens, mask, docs = read_set(out)
    eos = manifest["tokenizer"]["eos_id"]
    assert eos == hf.convert_tokens_to_ids("<|im_end|>")
    starts = docs[0].tolist()
    for k, conv in enumerate(conversations):
        ids = tokens[starts[k]:starts[k + 1]].tolist()
        reference = hf.apply_chat_template(conv, tokenize=True, add_generation_prompt=False)
        reference = reference["input_ids"] if isinstance(reference, dict) or hasattr(reference, "keys") else reference
        assert ids[:-1] == list(reference) and ids[-1] == eos
        masked_text = hf.decode([t for t, m in zip(ids[:-1], mask[starts[k]:starts[k + 1] - 1]) if m])
        for message in conv:
            if message["role"] == "assistant":
                assert message["content"] in masked_text
            else:
                assert message["content"] not in masked_text
    assert manifest["stats"]["chat_documents"] == 2
    assert 0 < manifest["loss_tokens"] < manifest["tokens"]


def test_invalid_utf8_policies_follow_python_decoder(tmp_path):
    hf = hf_tokenizer(LLAMA3)
    eos = hf.token_to_id("<|end_of_text|>")
    raw_lines = [b'{"text": "ok"}', b'{"text": "caf\xe9 \xf0\x9f\x98 \xed\xa0\x80 end"}', b'{"text": "fine"}']
    src = tmp_path / "utf8.jsonl"
    src.write_bytes(b"\n".join(raw_lines) + b"\n")

    prepare(tmp_path, [{"path": str(src)}], tmp_path / "replace")
    manifest, tokens, _, _ = read_set(tmp_path / "replace")
    texts = [json.loads(line.decode("utf-8", "replace"))["text"] for line in raw_lines]
    assert tokens.tolist() == [i for t in texts for i in hf.encode(t).ids + [eos]]
    assert manifest["stats"]["utf8_replacements"] == raw_lines[1].decode("utf-8", "replace").count("\ufffd")

    prepare(tmp_path, [{"path": str(src)}], tmp_path / "skip", sets=["errors.invalid_utf8=skip"])
    manifest, tokens, _, _ = read_set(tmp_path / "skip")
    assert manifest["documents"] == 2 and manifest["stats"]["skipped_invalid_utf8"] == 1

    failed = prepare(tmp_path, [{"path": str(src)}], tmp_path / "fail", sets=["errors.invalid_utf8=fail"], expect_rc=1)
    assert "utf8.jsonl:2: invalid UTF-8" in failed.stderr
    assert not (tmp_path / "fail").exists()


def test_malformed_json_and_empty_documents(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "a"}\n{"text": ""}\n{"text": "b",,}\n{"txt": "c"}\n{"text": "d"}\n')
    failed = prepare(tmp_path, [{"path": str(src)}], tmp_path / "strict", expect_rc=1)
    assert "bad.jsonl:3: malformed JSON" in failed.stderr
    prepare(tmp_path, [{"path": str(src)}], tmp_path / "lenient", sets=["errors.malformed_json=skip"])
    manifest = read_set(tmp_path / "lenient")[0]
    assert manifest["documents"] == 2
    assert manifest["stats"]["skipped_malformed_json"] == 2
    assert manifest["stats"]["skipped_empty"] == 1
    failed = prepare(tmp_path, [{"path": str(src)}], tmp_path / "no_empty",
                     sets=["errors.malformed_json=skip", "errors.empty_document=fail"], expect_rc=1)
    assert "bad.jsonl:2: empty document" in failed.stderr


def big_corpus(tmp_path):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "数据", "🙂", "\n", "the", "of"]
    src = tmp_path / "corpus.jsonl"
    with src.open("w") as f:
        for i in range(600):
            text = " ".join(rng.choice(words, size=int(rng.integers(1, 80))))
            f.write(json.dumps({"text": f"{i}: {text}"}) + "\n")
    return [{"path": str(src)}]


def test_deterministic_across_threads_and_resumable(tmp_path):
    inputs = big_corpus(tmp_path)
    out = tmp_path / "set"
    extra = {"shards": {"tokens_per_shard": 2000}, "prepare": {"records_per_unit": 16}}
    prepare(tmp_path, inputs, out, extra, sets=["prepare.threads=1"])
    reference = tree_bytes(out)
    assert len(json.loads(reference["manifest.json"])["shards"]) >= 6

    shutil.rmtree(out)
    prepare(tmp_path, inputs, out, extra, sets=["prepare.threads=4"])
    assert tree_bytes(out) == reference

    shutil.rmtree(out)
    interrupted = prepare(tmp_path, inputs, out, extra, env_extra={"XDISTILL_DATA_INTERRUPT_AFTER_SHARDS": "3"},
                          expect_rc=1)
    assert "interrupted after 3 shards" in interrupted.stderr
    assert not out.exists() and (tmp_path / "set.partial").exists()
    resumed = prepare(tmp_path, inputs, out, extra, sets=["prepare.threads=3"])
    assert "resuming" in resumed.stderr + resumed.stdout
    assert tree_bytes(out) == reference
    assert not (tmp_path / "set.partial").exists()


def test_inspect_detects_corruption(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"text": "some text to corrupt later"}) + "\n")
    out = tmp_path / "set"
    prepare(tmp_path, [{"path": str(src)}], out)
    manifest = json.loads((out / "manifest.json").read_text())
    token_file = out / manifest["shards"][0]["tokens_file"]["file"]
    data = bytearray(token_file.read_bytes())
    data[0] ^= 1
    token_file.write_bytes(bytes(data))
    failed = run(["data", "inspect", str(out), "--verify"], expect_rc=1)
    assert "SHA-256" in failed.stdout + failed.stderr
