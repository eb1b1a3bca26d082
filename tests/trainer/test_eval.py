"""``knowmix eval`` end to end on tiny models made here: fine-tuning on each task format reaches the accuracy a
trivially separable set allows, the probe's precision@1 and MRR match a hand computation on a model whose MLM
output is planted, micro-F1 excluding NA matches a hand count, and bad input is a counted `path:line: reason` or
one line with exit status 2."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from knowmix.cli import main as knowmix
from tests.trainer.helpers import VOCAB, make_shards, tiny_overrides, write_vocab
from knowmix.trainer.cli import train_main
from knowmix.trainer.eval_finetune import mean_std, micro_f1
from knowmix.trainer.eval_tasks import read_re
from knowmix.trainer.hf import save_hf
from knowmix.trainer.heads import KnowmixForPretraining
from knowmix.trainer.model import EncoderConfig

A = list("的一是在不了有和")  # class "a" sentences use only these characters
B = list("人这中大为上个国")  # class "b" only these
FILL = list("我以要他时来用们")


def tiny_config(dropout: float = 0.0) -> EncoderConfig:
    return EncoderConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout)


def make_hf(folder, model: KnowmixForPretraining | None = None, cfg: EncoderConfig | None = None) -> str:
    """A Hugging Face folder written by the trainer's own export (config, safetensors, vocab, tokenizer config)."""
    cfg = cfg or tiny_config()
    if model is None:
        torch.manual_seed(0)
        model = KnowmixForPretraining(cfg)
    vocab = os.path.join(str(folder), "src", "vocab.txt")
    tok = write_vocab(vocab)
    save_hf(model, cfg, str(folder / "hf"), tok, vocab)
    return str(folder / "hf")


def write_lines(path, lines) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return str(path)


def sentence(rng, chars, n=6) -> str:
    return "".join(rng.choice(chars, size=n))


def cls_lines(rng, n):
    lines = []
    for i in range(n):
        label = ["a", "b"][i % 2]
        lines.append(json.dumps({"label": label, "label_desc": "x", "sentence": sentence(rng, A if label == "a" else B),
                                 "keywords": ""}, ensure_ascii=False))
    return lines


def run_eval(args) -> int:
    return knowmix(["eval", *args, "--no-progress"])


def results(out) -> dict:
    with open(os.path.join(str(out), "results.json"), encoding="utf-8") as fh:
        return json.load(fh)


FAST = ["--epochs", "12", "--lr", "3e-3", "--batch-size", "8", "--max-seq-len", "32"]


def test_cls_and_pair_reach_100_percent(tmp_path, capsys):
    rng = np.random.default_rng(0)
    hf = make_hf(tmp_path)
    train = write_lines(tmp_path / "train.json", cls_lines(rng, 32))
    dev = write_lines(tmp_path / "dev.json", cls_lines(rng, 10))
    pairs = []
    for i in range(42):  # the label depends on the second sentence only: segment B must reach the classifier
        label = str(i % 2)
        pairs.append(json.dumps({"sentence1": sentence(rng, FILL), "sentence2": sentence(rng, A if label == "0" else B),
                                 "label": label}, ensure_ascii=False))
    ptrain = write_lines(tmp_path / "ptrain.json", pairs[:32])
    pdev = write_lines(tmp_path / "pdev.json", pairs[32:])
    out = tmp_path / "eval"
    rc = run_eval([hf, "--task", f"tnews=cls:{train},{dev}", "--task", f"afqmc=pair:{ptrain},{pdev}",
                   "--seeds", "2", *FAST, "--output", str(out)])
    assert rc == 0
    res = results(out)
    for name in ("tnews", "afqmc"):
        acc = res["tasks"][name]["metrics"]["accuracy"]
        assert acc["per_seed"] == [1.0, 1.0], name
        assert acc["mean"] == 1.0 and acc["std"] == 0.0
        assert res["tasks"][name]["examples"] == {"train": 32, "dev": 10}
    assert res["tasks"]["afqmc"]["labels"] == ["0", "1"]
    table = capsys.readouterr().out
    assert "tnews" in table and "100.00 ± 0.00" in table


def re_rows(rng, n):
    """(head, tail, relation, sentence): the relation is told by the word between the entities; NA otherwise."""
    rows = []
    for i in range(n):
        rel = ["位于", "作者", "NA"][i % 3]
        head, tail = sentence(rng, FILL, 2), sentence(rng, FILL, 2)
        while tail == head or tail in head or head in tail:
            tail = sentence(rng, FILL, 2)
        mid = {"位于": "在在在", "作者": "作作作", "NA": "和和和"}[rel]
        text = sentence(rng, list("一了有"), 3) + head + mid + tail + "。"
        rows.append((head, tail, rel, text))
    return rows


def test_re_tsv_and_opennre_reach_100_percent(tmp_path):
    rng = np.random.default_rng(1)
    hf = make_hf(tmp_path)
    train_rows, test_rows = re_rows(rng, 36), re_rows(rng, 12)
    train = write_lines(tmp_path / "train.txt", ["\t".join(r) + "\n" for r in train_rows])  # FinRE's blank lines
    test = []
    for h, t, rel, text in test_rows:  # OpenNRE JSON lines with character spans
        hs, ts = text.index(h), text.index(t)
        test.append(json.dumps({"text": text, "h": {"name": h, "pos": [hs, hs + len(h)]},
                                "t": {"name": t, "pos": [ts, ts + len(t)]}, "relation": rel}, ensure_ascii=False))
    test = write_lines(tmp_path / "test.txt", test)
    rel2id = write_lines(tmp_path / "relation2id.txt", ["NA 0", "位于 1", "作者 2", "未见 3"])
    out = tmp_path / "eval"
    rc = run_eval([hf, "--task", f"re:{train},{test}", "--relations", rel2id, "--seeds", "1", *FAST,
                   "--output", str(out)])
    assert rc == 0
    task = results(out)["tasks"]["re/" + tmp_path.name]
    assert task["metrics"]["accuracy"]["per_seed"] == [1.0]
    assert task["metrics"]["micro_f1"]["per_seed"] == [1.0]
    assert task["labels"] == ["NA", "位于", "作者", "未见"] and task["na_label"] == "NA"
    assert task["examples"] == {"train": 36, "dev": 12}


def test_micro_f1_excludes_na_by_hand():
    na = 0
    gold = [0, 1, 1, 2, 2, 0, 3, 0]
    pred = [0, 1, 2, 2, 0, 1, 3, 3]
    # non-NA predictions: 1,2,2,1,3,3 -> 6; correct among them: idx1 (1), idx3 (2), idx6 (3) -> 3
    # non-NA gold: 1,1,2,2,3 -> 5.  P = 3/6, R = 3/5, F1 = 2PR/(P+R) = 6/11
    got = micro_f1(pred, gold, na)
    assert got["precision"] == pytest.approx(0.5)
    assert got["recall"] == pytest.approx(0.6)
    assert got["micro_f1"] == pytest.approx(6 / 11)
    # without an NA label micro-F1 over every label is the accuracy: 4 of 8
    assert micro_f1(pred, gold, None)["micro_f1"] == pytest.approx(0.5)
    assert mean_std([0.5, 0.7, 0.9]) == (pytest.approx(0.7), pytest.approx(0.2))


def planted_model(cfg: EncoderConfig, bias: dict[str, float]) -> KnowmixForPretraining:
    """An MLM whose output is ``bias`` at every masked position, whatever the input: the head's transform is
    zeroed (so its output is LayerNorm's zero bias) and the logits are ``cls.predictions.bias``."""
    torch.manual_seed(0)
    model = KnowmixForPretraining(cfg)
    with torch.no_grad():
        t = model.cls.predictions.transform
        t.dense.weight.zero_()
        t.dense.bias.zero_()
        t.LayerNorm.bias.zero_()
        b = torch.zeros(cfg.vocab_size)
        for tok, v in bias.items():
            b[VOCAB.index(tok)] = v
        model.cls.predictions.bias.copy_(b)
    return model


def test_probe_planted_answers(tmp_path):
    cfg = tiny_config()
    hf = make_hf(tmp_path, planted_model(cfg, {"的": 10.0, "是": 8.0, "人": 6.0}), cfg)
    kg = write_lines(tmp_path / "kg.tsv", [
        "head\trelation\ttail\ttail_type",
        "我们\t位于\t的的\tcity",
        "我们\t位于\t的是\tcity",
        "他们\t位于\t是是\tcity",
        "时来\t位于\t人\tcity",
        "以要\t作者\t人人\tperson",
        "用来\t没有模板\t的的\tcity",
        "broken line",
    ])
    templates = write_lines(tmp_path / "probe.toml", ['"位于" = "{head}在{tail}。"', '"作者" = "{tail}写了{head}。"'])
    out = tmp_path / "eval"
    assert run_eval([hf, "--task", f"probe:{kg}", "--templates", templates, "--output", str(out)]) == 0
    task = results(out)["tasks"]["probe/" + tmp_path.name]
    # log p at every mask = bias - logsumexp(bias); a candidate's score is its tokens' mean:
    # 的的 10, 的是 9, 是是 8, 人 6 (minus the same constant). Other true tails of the same head are filtered.
    #   我们-的的: {的的, 是是, 人} rank 1; 我们-的是: {的是, 是是, 人} rank 1; 他们-是是: rank 3 of 4;
    #   时来-人: rank 4 of 4; 以要-人人: the only person, rank 1.
    # precision@1 (every mask's argmax is 的): only 的的.
    mrr = (1 + 1 + 1 / 3 + 1 / 4 + 1) / 5
    assert task["metrics"]["p_at_1"]["per_seed"] == [pytest.approx(1 / 5)]
    assert task["metrics"]["mrr"]["per_seed"] == [pytest.approx(mrr)]
    assert task["examples"] == {"kg": 5}
    assert task["skipped"] == {"kg": 2}  # the line without a template and the broken line


def test_eval_a_training_run_dir(tmp_path, capsys):
    rng = np.random.default_rng(2)
    pre, ktok = make_shards(str(tmp_path / "d"))
    run = tmp_path / "run"
    assert train_main(["", *tiny_overrides(pre, ktok, str(run), **{"train.max_steps": 2})]) == 0
    train = write_lines(tmp_path / "train.json", cls_lines(rng, 8))
    dev = write_lines(tmp_path / "dev.json", cls_lines(rng, 4))
    out = tmp_path / "eval"
    assert run_eval([str(run), "--task", f"cls:{train},{dev}", "--seeds", "1", "--epochs", "1",
                     "--output", str(out)]) == 0
    res = results(out)
    assert res["model"]["source"] == "run" and "step-0000002" in res["model"]["weights"]
    acc = res["tasks"]["cls/" + tmp_path.name]["metrics"]["accuracy"]["per_seed"][0]
    assert acc * 4 == round(acc * 4)  # a share of the 4 dev examples
    # the same run exported to Hugging Face: the same weights and tokenizer, so the same fine-tuning outcome
    assert knowmix(["export", str(run), "--hf", str(tmp_path / "hf")]) == 0
    kg = write_lines(tmp_path / "kg.tsv", ["head\trelation\ttail", "我们\t位于\t中国", "他们\t位于\t大上"])
    tpl = write_lines(tmp_path / "probe.toml", ['"位于" = "{head}在{tail}。"'])
    outs = {}
    for name, src in (("run", str(run)), ("hf", str(tmp_path / "hf"))):
        outs[name] = tmp_path / f"eval-{name}"
        assert run_eval([src, "--task", f"cls:{train},{dev}", "--task", f"probe:{kg}", "--templates", tpl,
                         "--seeds", "1", "--epochs", "1", "--output", str(outs[name])]) == 0
    run_res, hf_res = results(outs["run"]), results(outs["hf"])
    assert hf_res["model"]["source"] == "hf"
    for task in run_res["tasks"]:
        assert run_res["tasks"][task]["metrics"] == hf_res["tasks"][task]["metrics"]
    # a tokenizer copy that is not the one the run was trained with: one line, exit 2
    with open(run / "tokenizer" / "vocab.txt", "a", encoding="utf-8") as fh:
        fh.write("多\n")
    capsys.readouterr()
    assert run_eval([str(run), "--task", f"cls:{train},{dev}", "--output", str(tmp_path / "e3")]) == 2
    assert "differs from the tokenizer the model was trained with" in one_error_line(capsys)


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_malformed_lines_reported_and_counted(tmp_path, capsys):
    rng = np.random.default_rng(3)
    hf = make_hf(tmp_path)
    lines = cls_lines(rng, 8)
    lines[2] = "{not json"
    lines[5] = json.dumps({"sentence": "的的", "label": "-"})
    train = write_lines(tmp_path / "train.json", lines)
    dev = write_lines(tmp_path / "dev.json", cls_lines(rng, 4))
    out = tmp_path / "eval"
    assert run_eval([hf, "--task", f"cls:{train},{dev}", "--seeds", "1", "--epochs", "1", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{train}:3: not a JSON object" in err
    assert f"{train}:6: no gold label" in err
    task = results(out)["tasks"]["cls/" + tmp_path.name]
    assert task["skipped"] == {"train": 2, "dev": 0} and task["examples"]["train"] == 6


def test_re_reader_tsv_positions():
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write("京东方\t深圳光电\t分析\t在深圳光电周期间,京东方发布\n\n甲乙\t丙丁\t注资\t没有实体\n")
    split = read_re(fh.name)
    os.unlink(fh.name)
    (ex,) = split.examples
    assert ex.text[ex.head[0]:ex.head[1]] == "京东方" and ex.text[ex.tail[0]:ex.tail[1]] == "深圳光电"
    assert split.problems == [f"{fh.name}:3: head not in the sentence"]


def test_user_errors_are_one_line(tmp_path, capsys):
    rng = np.random.default_rng(4)
    hf = make_hf(tmp_path)
    train = write_lines(tmp_path / "train.json", cls_lines(rng, 6))
    dev_lines = cls_lines(rng, 4)
    dev_lines[1] = json.dumps({"sentence": "的的", "label": "c"})
    dev = write_lines(tmp_path / "dev.json", dev_lines)
    out = str(tmp_path / "eval")
    assert run_eval([hf, "--task", f"cls:{train},{dev}", "--output", out]) == 2
    line = one_error_line(capsys)
    assert f"{dev}:2: label 'c' does not occur in {train}" in line

    empty = write_lines(tmp_path / "empty.json", ["", "{bad"])
    assert run_eval([hf, "--task", f"cls:{train},{empty}", "--output", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"{empty}: no usable examples (1 lines skipped)")

    os.remove(os.path.join(hf, "vocab.txt"))
    assert run_eval([hf, "--task", f"cls:{train},{train}", "--output", out]) == 2
    assert "no tokenizer" in one_error_line(capsys)
    assert not os.path.exists(os.path.join(out, "results.json"))


def test_opennre_token_lists_and_rel2id_json(tmp_path):
    from knowmix.relations import read_relation_file

    path = write_lines(tmp_path / "t.txt", [
        json.dumps({"token": list("甲公司收购乙公司"), "h": {"name": "甲公司", "pos": [0, 3]},
                    "t": {"name": "乙公司", "pos": [5, 8]}, "relation": "收购"}, ensure_ascii=False),
        json.dumps({"token": list("甲公司"), "h": {"name": "甲公司", "pos": [0, 3]},
                    "t": {"name": "乙", "pos": [2, 9]}, "relation": "收购"}, ensure_ascii=False),
    ])
    split = read_re(path)
    (ex,) = split.examples
    assert (ex.text[ex.head[0]:ex.head[1]], ex.text[ex.tail[0]:ex.tail[1]], ex.label) == ("甲公司", "乙公司", "收购")
    assert split.problems == [f"{path}:2: t.pos [2, 9] outside the token list"]
    rel = write_lines(tmp_path / "rel2id.json", [json.dumps({"收购": 1, "NA": 0}, ensure_ascii=False)])
    assert read_relation_file(rel) == ["NA", "收购"]


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30),
       st.sampled_from([0, 2, None]))
def test_micro_f1_equals_per_label_counts(pairs, na):
    """micro-F1 = sklearn's micro average over the labels but NA: TP/FP/FN summed label by label."""
    gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
    labels = [x for x in range(4) if x != na]
    tp = sum(sum(p == g == x for p, g in zip(pred, gold)) for x in labels)
    fp = sum(sum(p == x and g != x for p, g in zip(pred, gold)) for x in labels)
    fn = sum(sum(g == x and p != x for p, g in zip(pred, gold)) for x in labels)
    want = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    assert micro_f1(pred, gold, na)["micro_f1"] == pytest.approx(want)


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    from knowmix.trainer.eval_text import for_hf

    return for_hf(make_hf(tmp_path_factory.mktemp("tok")))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_relation_markers_bracket_the_entities(wordpiece, data):
    """Whatever the sentence and the window: [E1] head [/E1] and [E2] tail [/E2] are in the input, intact."""
    from knowmix.trainer.eval_finetune import encode_relation
    from knowmix.trainer.eval_tasks import Example

    chars = FILL + A
    text = "".join(data.draw(st.lists(st.sampled_from(chars), min_size=4, max_size=60)))
    a = data.draw(st.integers(0, len(text) - 2))
    b = data.draw(st.integers(a + 1, min(len(text), a + 3)))
    rest = [(c, d) for c in range(len(text)) for d in range(c + 1, min(len(text), c + 3) + 1) if d <= a or c >= b]
    if not rest:
        return
    c, d = data.draw(st.sampled_from(rest))
    head, tail = ((a, b), (c, d)) if data.draw(st.booleans()) else ((c, d), (a, b))
    max_len = data.draw(st.integers(12, 64))
    got = encode_relation(wordpiece, Example("r", text, head=head, tail=tail), max_len)
    sp = wordpiece.special_ids
    span = max(head[1], tail[1]) - min(head[0], tail[0])
    if got is None:  # only when the two entities (plus 4 markers) cannot fit
        assert span + 4 > max_len - 2
        return
    ids, e1, e2 = got
    assert len(ids) <= max_len and ids[0] == sp["cls"] and ids[-1] == sp["sep"]
    assert ids[e1] == sp["e1"] and ids[e2] == sp["e2"]
    for pos, (s, e), close in ((e1, head, "e1_end"), (e2, tail, "e2_end")):
        want = wordpiece.encode(text[s:e])
        assert ids[pos + 1 : pos + 1 + len(want)] == want and ids[pos + 1 + len(want)] == sp[close]
