"""The cross-problem report on real sweeps: across.json's numbers recomputed here with scipy,
statsmodels and baycomp from the results.json files, the verdict, index.html in a browser."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_report import BIN_SELECTION, assert_png, write_run

from lossbench.report import build_report

LOSSES = ["ce", "mae", "mse_onehot"]
DATASETS = ["digits", "wine", "iris"]
SEEDS = [0, 1, 2]
FAST = ("trainer.max_epochs=3", "logger=none", "threads=1")
SWEEPS = {
    # 3 losses x 3 bundled data sets x 3 seeds
    "clean": ("-m", "task=multiclass", f"task.dataset={','.join(DATASETS)}",
              f"loss={','.join(LOSSES)}", f"seed={','.join(map(str, SEEDS))}", *FAST),
    # two label-noise settings on digits, two of the losses
    "noisy": ("-m", "task=multiclass", "perturb=label_noise", "perturb.rate=0.2,0.4",
              "loss=ce,mae", "seed=0,1", *FAST),
    # the diabetes case: does linear regression beat every trained loss?
    "diabetes": ("-m", "task=regression", "loss=l1,mse,huber", "seed=0,1", *FAST),
}


def report_cli(*folders: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lossbench.report", *map(str, folders),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def sweeps(new_cli, custom_loss_sweep) -> dict[str, Any]:
    """The three sweeps side by side (conftest's custom-loss sweep runs beside them too), then
    their reports side by side (CLI, subprocesses)."""
    started = {name: new_cli(f"across_{name}").start(*args) for name, args in SWEEPS.items()}
    folders = {}
    for name, job in started.items():
        done = job.wait(timeout=600)
        assert done.returncode == 0, done.stderr
        (folders[name],) = (done.cwd / "outputs" / "sweeps").glob("*/*")
    root = folders["clean"].parent
    outs = {"clean": root / "report_clean", "both": root / "report_both",
            "diabetes": root / "report_diabetes"}
    reports = {"clean": report_cli(folders["clean"], out=outs["clean"]),
               "both": report_cli(folders["clean"], folders["noisy"], out=outs["both"]),
               "diabetes": report_cli(folders["diabetes"], out=outs["diabetes"])}
    stdout = {}
    for name, proc in reports.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        stdout[name] = " ".join(out.split())  # rich wraps long lines
    return {"folders": folders, "out": outs, "stdout": stdout}


def read_results(*folders: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for f in folders for p in sorted(f.rglob("results.json"))]


def problem_of(run: dict[str, Any]) -> str:
    pert = run["perturb"]
    if pert["name"] == "none":
        return run["dataset"]
    return f"{run['dataset']}, label noise rate={pert['rate']:g} kind={pert['kind']}"


def cell_means(runs: list[dict[str, Any]], metric: str) -> dict[tuple[str, str], float]:
    """(problem, loss) -> mean over ok seeds of the test metric at the best-validation epoch."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        if r["status"] == "ok":
            cells.setdefault((problem_of(r), r["loss"]), []).append(r["metrics"]["best"][metric])
    return {k: float(np.mean(v)) for k, v in cells.items()}


def baseline_means(runs: list[dict[str, Any]], metric: str) -> dict[tuple[str, str], float]:
    cells: dict[tuple[str, str], dict[int, float]] = {}
    for r in runs:
        for name, scores in r["baselines"].items():
            cells.setdefault((problem_of(r), name), {})[r["seed"]] = scores[metric]
    return {k: float(np.mean(list(v.values()))) for k, v in cells.items()}


def expected_summary(runs: list[dict[str, Any]], problems: list[str], losses: list[str],
                     rope: float = 0.01) -> dict[str, Any]:
    """What across.json must say, from the files, with scipy and baycomp directly."""
    import baycomp
    from scipy import stats

    means = cell_means(runs, "test/acc")
    base = baseline_means(runs, "test/acc")
    m = np.array([[means[(p, e)] for e in losses] for p in problems])
    r = stats.rankdata(-m, axis=1)  # accuracy: higher is better, rank 1
    k, n = len(losses), len(problems)
    out: dict[str, Any] = {"mean_rank": dict(zip(losses, r.mean(axis=0), strict=True))}
    out["mean_rank_ci"] = {}
    for j, e in enumerate(losses):
        col = r[:, j]
        if (col == col[0]).all():
            out["mean_rank_ci"][e] = (col[0], col[0])
        else:
            ci = stats.bootstrap((col,), np.mean, n_resamples=10_000, method="percentile",
                                 rng=np.random.default_rng(0)).confidence_interval
            out["mean_rank_ci"][e] = (ci.low, ci.high)
    out["friedman"] = stats.friedmanchisquare(*m.T) if k >= 3 else None
    q = stats.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
    out["cd"] = q * math.sqrt(k * (k + 1) / (6 * n))
    out["pairwise"] = {(losses[i], losses[j]): (int((m[:, i] > m[:, j]).sum()),
                                                int((m[:, i] == m[:, j]).sum()),
                                                int((m[:, i] < m[:, j]).sum()))
                       for i, j in combinations(range(k), 2)}
    prior = np.array([base[(p, "prior")] for p in problems])
    best = m.max(axis=1)
    norm = (m - prior[:, None]) / (best - prior)[:, None]
    out["bayes"] = {(losses[i], losses[j]): baycomp.two_on_multiple(
        norm[:, i], norm[:, j], rope=rope, random_state=0, nsamples=10_000)
        for i, j in combinations(range(k), 2)}
    out["beaten"] = [p for p in problems
                     if base[(p, "logistic_regression")] > means_best(means, p, losses)]
    return out


def means_best(means: dict[tuple[str, str], float], problem: str, losses: list[str]) -> float:
    return max(means[(problem, e)] for e in losses)


def check_summary(s: dict[str, Any], want: dict[str, Any]) -> None:
    assert s["mean_rank"] == pytest.approx(want["mean_rank"])
    for loss, (lo, hi) in want["mean_rank_ci"].items():
        assert s["mean_rank_ci"][loss] == pytest.approx([lo, hi])
    if want["friedman"] is None:
        assert s["friedman_p"] is None and "3 or more" in s["friedman_note"]
    else:
        assert s["friedman_statistic"] == pytest.approx(want["friedman"].statistic)
        assert s["friedman_p"] == pytest.approx(want["friedman"].pvalue)
    assert s["cd"] == pytest.approx(want["cd"])
    got = {}
    for p in s["pairwise"]:
        got[(p["a"], p["b"])] = (p["wins"], p["ties"], p["losses"])
        got[(p["b"], p["a"])] = (p["losses"], p["ties"], p["wins"])
    for pair, counts in want["pairwise"].items():
        assert got[pair] == counts
    bayes = {}
    for b in s["bayesian"]:
        bayes[(b["a"], b["b"])] = (b["p_a_better"], b["p_equal"], b["p_b_better"])
        bayes[(b["b"], b["a"])] = (b["p_b_better"], b["p_equal"], b["p_a_better"])
    for pair, probs in want["bayes"].items():
        assert bayes[pair] == pytest.approx(probs, abs=1e-12)


def test_across_json_matches_scipy_and_baycomp(sweeps: dict[str, Any]) -> None:
    across = json.loads((sweeps["out"]["clean"] / "across.json").read_text())
    s = across["kinds"]["multiclass"]
    assert sorted(s["problems"]) == sorted(DATASETS) and sorted(s["losses"]) == sorted(LOSSES)
    assert s["excluded_problems"] == [] and s["excluded_losses"] == []
    assert s["rope"] == 0.01 and len(s["bayesian"]) == 3  # every pair, not only the leader's
    assert list(s["mean_rank"]) == s["losses"]  # best first
    runs = read_results(sweeps["folders"]["clean"])
    want = expected_summary(runs, s["problems"], s["losses"])
    check_summary(s, want)
    assert sorted(s["mean_rank"].values()) == list(s["mean_rank"].values())
    assert_png(sweeps["out"]["clean"] / "multiclass_critical_difference.png")


def test_verdict_in_console_markdown_and_page(sweeps: dict[str, Any]) -> None:
    out = sweeps["out"]["clean"]
    s = json.loads((out / "across.json").read_text())["kinds"]["multiclass"]
    verdict = s["verdict"]
    best = s["losses"][0]
    assert verdict.startswith("Across 3 multiclass problems")
    assert f"{best} has the best mean rank, {s['mean_rank'][best]:.2f}" in verdict \
        or "share the best mean rank" in verdict
    runs = read_results(sweeps["folders"]["clean"])
    beaten = expected_summary(runs, s["problems"], s["losses"])["beaten"]
    assert ("A baseline beats every trained loss" in verdict) == bool(beaten)
    for problem in beaten:
        assert problem in verdict.split("A baseline beats every trained loss")[1]
    assert f"Verdict, multiclass: {verdict}" in sweeps["stdout"]["clean"]
    md = (out / "across.md").read_text().splitlines()
    assert md[:5] == ["# lossbench: across problems", "", "## Verdict", "",
                      f"- **multiclass**: {verdict}"]
    page = PageParser.parse(out / "index.html")
    assert page.verdicts[0] == f"multiclass: {verdict}"
    assert page.first["verdict"] < page.first["table"] < page.first["cd"]


def test_diabetes_verdict_says_when_a_baseline_beats_every_loss(sweeps: dict[str, Any]) -> None:
    runs = read_results(sweeps["folders"]["diabetes"])
    mae: dict[str, list[float]] = {}
    for r in runs:
        mae.setdefault(r["loss"], []).append(r["metrics"]["best"]["test/mae"])
        mae.setdefault("linear_regression", []).append(
            r["baselines"]["linear_regression"]["test/mae"])
    best = min(float(np.mean(mae[k])) for k in ("huber", "l1", "mse"))
    beaten = float(np.mean(mae["linear_regression"])) < best
    s = json.loads((sweeps["out"]["diabetes"] / "across.json").read_text())["kinds"]["regression"]
    assert ("A baseline beats every trained loss on every problem" in s["verdict"]) == beaten
    assert ("linear_regression on diabetes" in s["verdict"]) == beaten
    assert f"Verdict, regression: {s['verdict']}" in sweeps["stdout"]["diabetes"]


def test_per_problem_pairs_match_scipy_and_statsmodels(sweeps: dict[str, Any]) -> None:
    import pandas as pd
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    paired = pd.read_csv(sweeps["out"]["clean"] / "paired.csv")
    runs = read_results(sweeps["folders"]["clean"])
    acc = {(r["dataset"], r["loss"], r["seed"]): r["metrics"]["best"]["test/acc"] for r in runs}
    for dataset in DATASETS:
        rows = paired[paired["problem"] == dataset]
        assert len(rows) == 3  # every pair of 3 losses
        raw = []
        for row in rows.itertuples():
            diff = np.array([acc[(dataset, row.a, s)] - acc[(dataset, row.b, s)] for s in SEEDS])
            assert row.mean_diff == pytest.approx(diff.mean())
            p = stats.wilcoxon(diff).pvalue if diff[diff != 0].size else 1.0
            assert row.p_wilcoxon == pytest.approx(p)
            raw.append(p)
            if diff.any() and not (diff == diff[0]).all():
                ci = stats.bootstrap((diff,), np.mean, n_resamples=10_000, method="percentile",
                                     rng=np.random.default_rng(0)).confidence_interval
                assert (row.diff_lo, row.diff_hi) == pytest.approx((ci.low, ci.high))
            assert not row.separated and "needs 6" in row.note  # 3 seeds
        assert list(rows["p_holm"]) == pytest.approx(multipletests(raw, method="holm")[1])


def test_perturbation_settings_are_problems_and_holes_are_dropped(sweeps: dict[str, Any]) -> None:
    s = json.loads((sweeps["out"]["both"] / "across.json").read_text())["kinds"]["multiclass"]
    noisy = [f"digits, label noise rate={r:g} kind=symmetric" for r in (0.2, 0.4)]
    assert sorted(s["problems"]) == sorted(DATASETS + noisy)
    # mse_onehot did not run on the noisy problems: 2 holes of 5 outweigh 1 of 3 per problem
    assert [x["loss"] for x in s["excluded_losses"]] == ["mse_onehot"]
    assert "2 of 5 problems" in s["excluded_losses"][0]["reason"]
    assert sorted(s["losses"]) == ["ce", "mae"]
    assert "left out" in s["verdict"]
    runs = read_results(sweeps["folders"]["clean"], sweeps["folders"]["noisy"])
    check_summary(s, expected_summary(runs, s["problems"], s["losses"]))
    md = (sweeps["out"]["both"] / "across.md").read_text()
    assert "### Left out" in md and "mse_onehot" in md.split("### Left out")[1]


class PageParser(HTMLParser):
    """Tags in order, verdict texts, images; complains about unbalanced tags."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.order = 0
        self.first: dict[str, int] = {}
        self.images: list[dict[str, str]] = []
        self.verdicts: list[str] = []
        self.scripts = 0
        self._in_verdict = False

    @classmethod
    def parse(cls, path: Path) -> PageParser:
        page = cls()
        page.feed(path.read_text(encoding="utf-8"))
        page.close()
        assert page.stack == [], f"unclosed tags: {page.stack}"
        return page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.order += 1
        if tag == "script":
            self.scripts += 1
        if tag == "p" and a.get("class") == "verdict":
            self.first.setdefault("verdict", self.order)
            self._in_verdict = True
            self.verdicts.append("")
        if tag == "table":
            self.first.setdefault("table", self.order)
        if tag == "img":
            self.images.append({k: v or "" for k, v in a.items()})
            if a.get("class") == "cd":
                self.first.setdefault("cd", self.order)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag == "p":
            self._in_verdict = False

    def handle_data(self, data: str) -> None:
        if self._in_verdict:
            self.verdicts[-1] += data


def test_index_html_is_self_contained_and_parses(sweeps: dict[str, Any]) -> None:
    page = PageParser.parse(sweeps["out"]["clean"] / "index.html")
    assert page.scripts == 0
    assert len(page.images) >= 1 + 2 * len(DATASETS)  # CD + selection and curves per data set
    for img in page.images:
        head, _, data = img["src"].partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    alts = [img["alt"] for img in page.images]
    assert "critical-difference diagram, multiclass" in alts


def test_user_strings_are_escaped(sweeps: dict[str, Any], tmp_path: Path) -> None:
    """A data set and a loss named with markup land in the page as text, not as tags."""
    nasty_data, nasty_loss = "<script>alert('data')</script>", "mae<img src=x onerror=alert(1)>"
    copy = tmp_path / "copy"
    shutil.copytree(sweeps["folders"]["clean"], copy, ignore=shutil.ignore_patterns("report*"))
    for path in copy.rglob("results.json"):
        run = json.loads(path.read_text())
        if run["dataset"] == "digits":  # two data sets are enough, and quicker to plot
            path.unlink()
            continue
        if run["dataset"] == "wine":
            run["dataset"] = nasty_data
        if run["loss"] == "mae":
            run["loss"] = nasty_loss
        path.write_text(json.dumps(run))
    build_report([copy])
    html = (copy / "report" / "index.html").read_text()
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#x27;data&#x27;)&lt;/script&gt;" in html
    page = PageParser.parse(copy / "report" / "index.html")
    assert page.scripts == 0 and all(img["src"].startswith("data:") for img in page.images)
    assert html.count("mae&lt;img src=x onerror=alert(1)&gt;") >= 3


def chromium() -> str | None:
    return next((p for name in ("chromium", "chromium-browser", "google-chrome")
                 if (p := shutil.which(name))), None)


PROBE = """<script>
window.addEventListener('load', () => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.top, r.height, r.width]; };
  const imgs = [...document.images];
  const cd = document.querySelector('img.cd');
  document.body.setAttribute('data-probe', JSON.stringify({
    images: imgs.length, broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).length,
    verdict: box(document.querySelector('p.verdict')),
    cd: cd ? [...box(cd), cd.naturalWidth] : null,
    height: document.documentElement.scrollHeight}));
});
</script>"""


def test_index_html_renders_in_a_headless_browser(sweeps: dict[str, Any], tmp_path: Path) -> None:
    """Chromium opens the page from disk: verdict on the first screen, CD diagram drawn, no
    broken image. The probe script goes into a copy of the page, never into the report."""
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium to render with: `apt-get install chromium` (.ci/run does)")
    page = sweeps["out"]["clean"] / "index.html"
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"]
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = PageParser()
    found.feed(dom.stdout)
    raw = dom.stdout.split('data-probe="', 1)[1].split('"', 1)[0]
    facts = json.loads(raw.replace("&quot;", '"'))
    assert facts["images"] >= 7 and facts["broken"] == 0
    top, height, width = facts["verdict"]
    assert 0 <= top < 900 and height > 20 and width > 300  # on the first screen
    cd_top, cd_height, cd_width, natural = facts["cd"]
    assert cd_height > 100 and cd_width > 300 and natural > 300
    # The screenshot: the verdict's blue box and the diagram's coloured markers are drawn.
    shot = tmp_path / "shot.png"
    tall = int(cd_top + cd_height + 50)
    done = subprocess.run([*flags[:-1], f"--window-size=1280,{tall}",
                           f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = (mpimg.imread(shot)[..., :3] * 255).round().astype(int)
    verdict_box = pixels[int(top):int(top + height)]
    assert (np.abs(verdict_box - [0xEE, 0xF5, 0xFF]).sum(axis=-1) < 6).mean() > 0.3
    diagram = pixels[int(cd_top):int(cd_top + cd_height)]
    dark = (diagram.sum(axis=-1) < 200).mean()
    saturated = ((diagram.max(axis=-1) - diagram.min(axis=-1)) > 100).mean()
    assert dark > 0.002 and saturated > 0.0005  # lines and text, and the losses' colours


def test_missing_cells_policy(tmp_path: Path) -> None:
    """A diverged seed ranks last, a failed cell is a hole, an unfit loss is listed."""
    from scipy import stats

    folder = tmp_path / "policy"
    score = {"a": 0.90, "b": 0.85, "c": 0.80, "d": 0.95}
    shift = {"p1": 0.0, "p2": -0.02, "p3": 0.01, "p4": -0.05}
    for problem, dx in shift.items():
        for seed in range(3):
            for loss, value in score.items():
                status, metrics = "ok", True
                if loss == "d" and problem == "p2" and seed == 1:
                    status = "diverged"
                if loss == "c" and problem == "p4":
                    status, metrics = "failed", False
                write_run(folder, task="binary", loss=loss, seed=seed, dataset=problem,
                          selection=BIN_SELECTION, score=value + dx + seed / 1000,
                          status=status, metrics=metrics,
                          baselines={"prior": 0.5, "logistic_regression": 0.99
                                     if problem == "p1" else 0.6})
            write_run(folder, task="binary", loss="e", seed=seed, dataset=problem,
                      selection=BIN_SELECTION, score=0, status="skipped", metrics=False)
    result = build_report([folder])
    s = result["across"]["kinds"]["binary"]
    assert s["problems"] == ["p1", "p2", "p3"]
    assert s["excluded_problems"] == [{"problem": "p4", "reason": "no usable result for c"}]
    assert s["excluded_losses"] == [{"loss": "e", "reason": "does not fit this task kind "
                                     "(skipped)"}]
    assert s["rank_matrix"]["p2"]["d"] == 4  # best scores, but diverged on one seed: last
    assert s["rank_matrix"]["p1"]["d"] == 1
    cells = {(c["problem"], c["loss"]): c for c in s["cells"]}
    assert cells[("p2", "d")]["status"] == "diverged" and cells[("p4", "c")]["status"] == "failed"
    # Recompute: d's diverged cell at -inf, ranks with scipy, Friedman with scipy.
    m = np.array([[np.mean([score[e] + shift[p] - 0.01 + s_ / 1000 for s_ in range(3)])
                   for e in s["losses"]] for p in s["problems"]])
    m[1, s["losses"].index("d")] = -np.inf
    r = stats.rankdata(-m, axis=1)
    assert s["mean_rank"] == pytest.approx(dict(zip(s["losses"], r.mean(axis=0), strict=True)))
    fr = stats.friedmanchisquare(*r.T)
    assert s["friedman_p"] == pytest.approx(fr.pvalue)
    # In the Bayesian test d's diverged cell scores min(0, worst other normalised score) = 0.
    assert s["bayesian_scores"]["p2"]["d"] == 0.0
    assert s["baseline_beats_all"][0]["problem"] == "p1"
    assert "logistic_regression on p1" in s["verdict"] and "1 of 4 problems" in s["verdict"]
    md = (folder / "report" / "across.md").read_text()
    assert "| p4 |" in md and "failed" in md.split("| p4 |")[1].splitlines()[0]
    assert "diverged 1x" in md


def test_real_failed_and_diverged_runs(sweeps: dict[str, Any], custom_loss_sweep,
                                       tmp_path: Path) -> None:
    """conftest's sweep: user losses at a sane and an absurd learning rate; one loss always
    raises (failed), the absurd rate blows the others up (diverged)."""
    done = custom_loss_sweep.wait()
    (folder,) = (done.cwd / "outputs" / "sweeps").glob("*/*")
    runs = read_results(folder)
    status = {(r["loss"], r["config"]["optimizer"]["lr"]): r["status"] for r in runs}
    result = build_report([folder], out_dir=tmp_path / "report")
    s = result["across"]["kinds"]["regression"]
    boom = "Boom"
    assert all(v == "failed" for (loss, _), v in status.items() if loss == boom)
    assert s["excluded_losses"][0]["loss"] == boom  # failed on every problem
    assert "2 of 2 problems" in s["excluded_losses"][0]["reason"]
    assert len(s["problems"]) == 2 and boom not in s["losses"]
    for problem, row in s["rank_matrix"].items():
        lr = 1e30 if "1e30" in problem else 0.003
        diverged = [e for e in row if status[(e, lr)] == "diverged"]
        assert diverged if lr == 1e30 else not diverged
        if len(diverged) == len(row):  # every loss blew up: they share the ranks
            assert set(row.values()) == {(1 + len(row)) / 2}
        for e in diverged:
            assert row[e] >= max(v for k, v in row.items() if k not in diverged)
    assert "left out" in s["verdict"]
    md = (tmp_path / "report" / "across.md").read_text()
    assert "### Left out" in md and boom in md.split("### Left out")[1]
    assert "diverged 1x" in md
