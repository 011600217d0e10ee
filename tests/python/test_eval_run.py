"""`xdistill eval run` end to end on CPU: a tiny random Llama teacher with the Llama-3
tokenizer, scored on the tiny tasks of tests/eval/fixtures/tasks, against an
independent Python reference built on transformers and tokenizers:

  - multiple choice: every per-choice log-likelihood equals transformers' (fp32), with
    the harness's request encoding (trailing context space moved into the continuation)
    and our seeded few-shot draw re-implemented here;
  - generate_until: the greedy generations equal transformers' greedy generate(), cut
    at the task's stop sequences;
  - loglikelihood_rolling: the sum over the harness's rolling windows equals transformers';
  - the scores do not depend on the batch size (right padding is exact).

Any model directory can be run end to end: XD_EVAL_EXTRA_MODELS=dir1:dir2 adds model
directories (e.g. a distilled student, with its tokenizer files) to
test_any_model_dir_end_to_end, which checks the results file and compares it with the
teacher's through `eval compare`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from hf_fixtures import load_hf, randomise, run_xdistill, tiny_config

ROOT = Path(os.environ.get("XD_SOURCE_DIR", Path(__file__).resolve().parents[2]))
TASKS = ROOT / "tests" / "eval" / "fixtures" / "tasks"
TOKENIZER_CANDIDATES = [ROOT.parent / "shared" / "fixtures" / "tokenizers" / "llama3",
                        ROOT / "shared" / "fixtures" / "tokenizers" / "llama3",
                        Path("/work/shared/fixtures/tokenizers/llama3")]
TOKENIZER = next((p for p in TOKENIZER_CANDIDATES if (p / "tokenizer.json").exists()), None)
pytestmark = pytest.mark.skipif(TOKENIZER is None, reason="Llama-3 tokenizer fixture (shared/) not found")


# --- the Python reference -------------------------------------------------------

def splitmix64(state: int):
    while True:
        state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        yield z ^ (z >> 31)


def draw_fewshot(pool_size: int, k: int, seed: int, doc_key: str, exclude: int) -> list[int]:
    """The documented draw: splitmix64 seeded by seed ^ fnv1a(doc_key), partial Fisher-Yates."""
    h = 1469598103934665603
    for c in doc_key.encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    rng = splitmix64(seed ^ h)
    perm, chosen, i = list(range(pool_size)), [], 0
    while len(chosen) < k:
        j = i + ((next(rng) * (pool_size - i)) >> 64)
        perm[i], perm[j] = perm[j], perm[i]
        if perm[i] != exclude:
            chosen.append(perm[i])
        i += 1
    return chosen


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(template: str, doc: dict) -> str:
    out = template
    for key, value in doc.items():
        out = out.replace("{{" + key + "}}", value if isinstance(value, str) else json.dumps(value))
    return out


def mc_prompt(doc_index, doc, pool, text, seed=1234, k=2, same_split=False):
    shots = draw_fewshot(len(pool), k, seed, str(doc_index), doc_index if same_split else len(pool))
    prompt = ""
    for i in shots:
        ex = pool[i]
        gold = ex["choices"][ex["label"]] if isinstance(ex["label"], int) else ex["label"]
        prompt += render(text, ex) + " " + gold + "\n\n"
    return prompt + render(text, doc)


def encode_pair(tok, context: str, continuation: str):
    """lm-evaluation-harness's HF encoding (without BOS, its default)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tok.encode(context + continuation, add_special_tokens=False).ids
    ctx = tok.encode(context, add_special_tokens=False).ids
    return ctx, whole[len(ctx):]


@torch.no_grad()
def loglikelihood(model, ctx: list[int], cont: list[int]) -> float:
    ids = torch.tensor([(ctx + cont)[:-1]])
    logp = model(ids).logits[0].double().log_softmax(-1)
    n = len(cont)
    positions = range(ids.shape[1] - n, ids.shape[1])
    return float(sum(logp[p, t] for p, t in zip(positions, cont)))


def rolling_windows(tokens: list[int], prefix: int, max_len: int):
    """The harness's rolling windows (context_len 1) made disjoint."""
    first = min(max_len, len(tokens))
    windows = [([prefix], tokens[:first])]
    done = first
    while done < len(tokens):
        end = min(len(tokens), done + max_len)
        windows.append((tokens[end - max_len - 1:done], tokens[done:end]))
        done = end
    return windows


# --- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A tiny random Llama with the full Llama-3 vocabulary and its tokenizer files."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny_teacher")
    cfg = tiny_config("llama3")
    cfg.vocab_size, cfg.num_hidden_layers = 128256, 2
    cfg.bos_token_id, cfg.eos_token_id = 128000, 128001
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    randomise(model, seed=3)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, out / name)
    return out


@pytest.fixture(scope="module")
def reference(teacher):
    from tokenizers import Tokenizer
    return load_hf(teacher), Tokenizer.from_file(str(teacher / "tokenizer.json"))


@pytest.fixture(scope="module")
def teacher_results(teacher, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("eval") / "teacher.json"
    proc = run_xdistill("eval", "run", "--model", teacher, "--tasks", TASKS / "tiny_mc.yaml", TASKS / "tiny_gen.yaml",
                        TASKS / "tiny_rolling.yaml", "--out", out, "--device", "cpu", "--batch-size", "auto")
    assert "tiny_mc" in proc.stdout and "acc_norm,none" in proc.stdout
    data = json.loads(out.read_text())
    data["_path"] = str(out)
    return data


# --- tests ----------------------------------------------------------------------

def test_multiple_choice_loglikelihoods_match_transformers(teacher_results, reference):
    model, tok = reference
    docs, pool = read_jsonl(TASKS / "tiny_mc_test.jsonl"), read_jsonl(TASKS / "tiny_mc_train.jsonl")
    samples = teacher_results["samples"]["tiny_mc"]
    assert len(samples) == len(docs)
    accs, norms = [], []
    for i, (doc, sample) in enumerate(zip(docs, samples)):
        assert sample["id"] == doc["id"]
        context = mc_prompt(i, doc, pool, "Question: {{question}}\nAnswer:")
        ref = [loglikelihood(model, *encode_pair(tok, context, " " + c)) for c in doc["choices"]]
        ours = sample["loglikelihoods"]
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            assert abs(a - b) <= 1e-4 * abs(b) + 1e-3, (i, ours, ref)
        gold = doc["label"] if isinstance(doc["label"], int) else doc["choices"].index(doc["label"])
        accs.append(float(max(range(len(ref)), key=lambda c: (ref[c], -c)) == gold))
        norm = [ll / len(c) for ll, c in zip(ref, doc["choices"])]
        norms.append(float(max(range(len(ref)), key=lambda c: (norm[c], -c)) == gold))
    res = teacher_results["results"]["tiny_mc"]
    assert res["acc,none"] == pytest.approx(sum(accs) / len(accs))
    assert res["acc_norm,none"] == pytest.approx(sum(norms) / len(norms))
    n = len(accs)
    mean = sum(accs) / n
    sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1))
    assert res["acc_stderr,none"] == pytest.approx(sd / math.sqrt(n))


@torch.no_grad()
def test_greedy_generations_match_transformers(teacher_results, reference):
    model, tok = reference
    docs = read_jsonl(TASKS / "tiny_gen_test.jsonl")
    samples = teacher_results["samples"]["tiny_gen"]
    for i, (doc, sample) in enumerate(zip(docs, samples)):
        shot = draw_fewshot(len(docs), 1, 1234, str(i), i)[0]
        ex = docs[shot]
        prompt = render("Question: {{question}}\nAnswer:", ex) + " " + ex["answer"] + "\n\n" + \
            render("Question: {{question}}\nAnswer:", doc)
        ids = torch.tensor([tok.encode(prompt, add_special_tokens=False).ids])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                             eos_token_id=[128001], pad_token_id=128001)
        text = tok.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)
        for stop in ["\n\n", "Question:"]:
            text = text.split(stop)[0]
        assert sample["generation"] == text, (i, sample["generation"], text)
    assert "exact_match,strict-match" in teacher_results["results"]["tiny_gen"]


def test_rolling_loglikelihood_matches_transformers(teacher_results, reference):
    model, tok = reference
    docs = read_jsonl(TASKS / "tiny_rolling_test.jsonl")
    samples = teacher_results["samples"]["tiny_rolling"]
    total_nll, total_bytes = 0.0, 0
    for doc, sample in zip(docs, samples):
        tokens = tok.encode(doc["text"], add_special_tokens=False).ids
        ref = sum(loglikelihood(model, c, t) for c, t in rolling_windows(tokens, 128000, 16))
        assert sample["loglikelihood"] == pytest.approx(ref, rel=1e-4, abs=1e-3)
        assert sample["tokens"] == len(tokens)
        assert sample["bytes"] == len(doc["text"].encode())
        total_nll -= ref
        total_bytes += len(doc["text"].encode())
    res = teacher_results["results"]["tiny_rolling"]
    assert res["bits_per_byte,none"] == pytest.approx(total_nll / total_bytes / math.log(2), rel=1e-4)
    assert teacher_results["higher_is_better"]["tiny_rolling"]["bits_per_byte"] is False


def test_batch_size_does_not_change_scores(teacher, teacher_results, tmp_path):
    out = tmp_path / "b1.json"
    run_xdistill("eval", "run", "--model", teacher, "--tasks", TASKS / "tiny_mc.yaml", TASKS / "tiny_rolling.yaml",
                 "--out", out, "--device", "cpu", "--batch-size", "1")
    one = json.loads(out.read_text())
    for task, field in [("tiny_mc", "loglikelihoods"), ("tiny_rolling", "loglikelihood")]:
        for a, b in zip(one["samples"][task], teacher_results["samples"][task]):
            assert a[field] == pytest.approx(b[field], rel=1e-5, abs=1e-4)


def test_limit_and_harness_layout(teacher, tmp_path):
    out = tmp_path / "limited.json"
    run_xdistill("eval", "run", "--model", teacher, "--tasks", TASKS / "tiny_mc.yaml", "--out", out,
                 "--device", "cpu", "--limit", "2")
    data = json.loads(out.read_text())
    assert data["n-samples"]["tiny_mc"] == {"original": 6, "effective": 2}
    assert len(data["samples"]["tiny_mc"]) == 2
    assert data["n-shot"]["tiny_mc"] == 2
    assert set(data["results"]["tiny_mc"]) == {"alias", "acc,none", "acc_stderr,none", "acc_norm,none",
                                                "acc_norm_stderr,none"}
    assert data["xdistill"]["model_type"] == "llama"


def test_bad_arguments_are_usage_errors(teacher, tmp_path):
    proc = run_xdistill("eval", "run", "--model", teacher, "--tasks", TASKS / "tiny_mc.yaml", "--out",
                        tmp_path / "x.json", "--batch-size", "lots", check=False)
    assert proc.returncode == 2 and "--batch-size" in proc.stderr
    proc = run_xdistill("eval", "run", "--model", teacher, "--tasks", tmp_path / "missing.yaml", "--out",
                        tmp_path / "x.json", check=False)
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr


def extra_models() -> list[str]:
    return [p for p in os.environ.get("XD_EVAL_EXTRA_MODELS", "").split(":") if p]


@pytest.mark.parametrize("model", ["teacher"] + extra_models())
def test_any_model_dir_end_to_end(model, teacher, teacher_results, tmp_path):
    model_dir = teacher if model == "teacher" else Path(model)
    tokenizer = [] if (model_dir / "tokenizer.json").exists() else ["--tokenizer", teacher]
    out = tmp_path / "model.json"
    run_xdistill("eval", "run", "--model", model_dir, "--tasks", TASKS, "--out", out, "--device", "cpu", *tokenizer)
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"tiny_mc", "tiny_gen", "tiny_rolling"}
    for task, records in data["samples"].items():
        assert len(records) == data["n-samples"][task]["effective"]
        assert len({r["id"] for r in records}) == len(records)
    # The results are comparable with the teacher's, paired by sample id.
    report = tmp_path / "report.json"
    proc = run_xdistill("eval", "compare", "--teacher", teacher_results["_path"], "--student", out,
                        "--out", report, "--bootstrap", "200")
    rep = json.loads(report.read_text())["students"][0]
    assert {b["name"] for b in rep["benchmarks"]} == {"tiny_mc", "tiny_gen", "tiny_rolling"}
    assert all(b["paired_samples"] > 0 for b in rep["benchmarks"])
    assert rep["bootstrap"] is not None and "alpha*" in proc.stdout
    if model == "teacher":  # scored twice, identically: lossless, recovery exactly 1 where defined
        assert rep["alpha_star"] == 0.0 and rep["C_0"] == 1.0
