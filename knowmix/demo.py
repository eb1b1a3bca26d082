"""``knowmix demo``: the whole flow on the bundled fixture corpora, then where the results are.

clean by the rules, keeping what they drop -> quality-train (encyclopedia + news positive, the dropped web/qa
text and generated junk negative) -> clean with that quality model (5 sources, every reader kind the fixtures
have) -> stats -> kg-samples (admin + world KG)
-> spm-train -> tokenize (docs and knowledge) -> a short CPU training run -> export to Hugging Face.
Each stage is the same entry point a user calls; the demo only writes the job config and chains them.
"""

from __future__ import annotations

import json
import os
import time

from knowmix import corpora

FIXTURES = os.path.join(os.path.dirname(corpora.__file__), "fixtures")


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def demo_job_toml(out_dir: str, quality_model: str | None = None, keep_dropped: bool = False) -> str:
    """The demo's clean job: one source per kind, as a user would write it (optionally with a [quality] model
    and ``keep_dropped``)."""
    q = json.dumps
    return _demo_job_base(out_dir) + (
        "keep_dropped = true\n" if keep_dropped else ""
    ) + _RULES + (
        f"\n[quality]\nmodel = {q(quality_model)}\nthreshold = 0.5\nkinds = [\"web\", \"qa\"]\n" if quality_model else ""
    )


_RULES = """
[rules.news]
min_chars = 20

[rules.qa]
min_chars = 20
"""


def _demo_job_base(out_dir: str) -> str:
    q = json.dumps
    return f"""# knowmix demo job: the bundled fixture corpora (see {fixture('LICENSE-NOTE.txt')})
[[sources]]
kind = "encyclopedia"
format = "squad"
paths = [{q(fixture('encyclopedia_cmrc2018_trial.json'))}, {q(fixture('encyclopedia_drcd_dev_first40articles.json'))}]

[[sources]]
kind = "news"
format = "txt"
paths = [{q(fixture('news_peoples_daily_199801_first400.txt'))}]

[[sources]]
kind = "qa"
format = "csv"
paths = [{q(fixture('qa_medical_toyhom_300.gbk.csv'))}]
text_fields = ["title", "ask", "answer"]
title_field = "title"

[[sources]]
kind = "web"
format = "html"
paths = [{q(fixture('web_zhwikipedia_page.html'))}]

[output]
dir = {q(out_dir)}
num_shards = 2
cluster_table = true
"""


def step(title: str):
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def demo_main(argv: list[str]) -> int:
    from knowmix.args import Parser
    from knowmix.cli import main as knowmix

    parser = Parser("knowmix demo", __doc__.splitlines()[0])
    parser.add_argument("--output", default="out/demo", help="directory for every stage's output")
    parser.add_argument("--train-steps", type=int, default=200, help="training steps of the tiny model")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    job = os.path.join(out, "job.toml")
    with open(job, "w", encoding="utf-8") as fh:
        fh.write(demo_job_toml(os.path.join(out, "docs")))
    results: list[tuple[str, str]] = []

    def run(title: str, cmd: list[str], produced: str | None = None) -> None:
        t0 = step(title + ": knowmix " + " ".join(cmd))
        rc = knowmix(cmd)
        if rc != 0:
            raise SystemExit(rc)
        print(f"   ({time.perf_counter() - t0:.1f} s)")
        if produced:
            results.append((title, produced))

    model = _train_quality_model(out, run)
    with open(job, "w", encoding="utf-8") as fh:
        fh.write(demo_job_toml(os.path.join(out, "docs"), quality_model=model, keep_dropped=True))
    run("clean", ["clean", "--config", job], os.path.join(out, "docs"))
    run("stats", ["stats", os.path.join(out, "docs"), "--html", os.path.join(out, "docs-report.html")])
    for extra in _later_stages(out, args.train_steps):
        run(*extra)

    print("\nResults:")
    for title, path in results:
        print(f"  {title:<12} {path}")
    print(f"  {'report':<12} {os.path.join(out, 'docs-report.html')}")
    return 0


JUNK_WORDS = ("首页", "登录", "注册", "点击", "下载", "免费", "优惠", "广告", "购物车", "客服", "热线", "联系我们",
              "版权所有", "更多", "返回顶部", "上一页", "下一页", "分享到", "扫码", "关注")


def junk_texts(n: int = 300, seed: int = 0) -> list[str]:
    """Generated boilerplate (navigation bars, ad lines): the demo's negative examples beside the dropped text."""
    import random

    rng = random.Random(seed)
    sep = (" | ", "  ", " > ", "，")
    return [rng.choice(sep).join(rng.choice(JUNK_WORDS) for _ in range(rng.randint(4, 24))) for _ in range(n)]


def _train_quality_model(out: str, run) -> str | None:
    """Clean by the rules alone (keeping the dropped documents), train a quality model on the result; None
    where the installed fastText cannot train (fasttext-predict), and the demo goes on without it."""
    import fasttext

    if not hasattr(fasttext, "train_supervised"):
        print("\n== quality-train skipped: the installed fastText predicts only (training needs fasttext-numpy2)")
        return None
    rules_out = os.path.join(out, "docs-rules")
    rules_job = os.path.join(out, "job-rules.toml")
    with open(rules_job, "w", encoding="utf-8") as fh:
        fh.write(demo_job_toml(rules_out, keep_dropped=True))
    run("clean by the rules (keep_dropped)", ["clean", "--config", rules_job])
    junk = os.path.join(out, "quality", "junk.jsonl")
    os.makedirs(os.path.dirname(junk), exist_ok=True)
    with open(junk, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in junk_texts())
    model = os.path.join(out, "quality", "quality.bin")
    run(
        "quality-train",
        ["quality-train", "--positive", f"{rules_out}:encyclopedia,news", "--negative",
         os.path.join(rules_out, "dropped") + ":web,qa", "--negative-file", junk, "--dim", "32", "--bucket", "20000",
         "--seed", "0", "--output", model],
        model,
    )
    return model


def _later_stages(out: str, train_steps: int):
    """The stages after cleaning, each included once its module is installed."""
    import importlib.util

    def have(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    docs = os.path.join(out, "docs")
    knowledge = os.path.join(out, "knowledge")
    if have("knowmix.pipelines.kg_samples"):
        yield (
            "kg-samples",
            ["kg-samples", "--kg", fixture("admin_triples_county_up.tsv"), "--kg", fixture("world_triples.tsv"),
             "--docs", docs, "--output", knowledge, "--seed", "0"],
            knowledge,
        )
    if have("knowmix.pipelines.spm_train") and have("knowmix.pipelines.tokenize"):
        spm = os.path.join(out, "tok", "spm")
        yield ("spm-train", ["spm-train", "--docs", docs, "--vocab-size", "8000", "--output", spm], spm + ".model")
        yield (
            "tokenize",
            ["tokenize", "--input", docs, "--tokenizer", f"spm:{spm}.model", "--max-seq-len", "128",
             "--output", os.path.join(out, "pretrain")],
            os.path.join(out, "pretrain"),
        )
        if os.path.isdir(knowledge):
            yield (
                "tokenize",
                ["tokenize", "--input", knowledge, "--tokenizer", f"spm:{spm}.model", "--max-seq-len", "128",
                 "--output", os.path.join(out, "ktok")],
                os.path.join(out, "ktok"),
            )
    if have("knowmix.trainer.cli") and have("knowmix.pipelines.tokenize"):
        # the demo's config ships inside the package (trainer/configs/), so an installed knowmix trains too
        from knowmix.trainer.config import BUNDLED_CONFIGS

        # never skipped: a missing config is the train step's one-line error, not a silently shorter demo
        config = os.path.join(os.environ.get("KNOWMIX_CONFIGS", BUNDLED_CONFIGS), "tiny.toml")
        run_dir = os.path.join(out, "run")
        yield (
            "train",
            ["train", config, f"data.pretrain={os.path.join(out, 'pretrain')}",
             f"data.knowledge={os.path.join(out, 'ktok')}", f"train.output_dir={run_dir}",
             f"train.max_steps={train_steps}"],
            run_dir,
        )
        yield ("export", ["export", run_dir, "--hf", os.path.join(out, "hf-model")], os.path.join(out, "hf-model"))
