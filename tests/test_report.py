"""The front page of `snakemake --report`: no docutils system message, each category numbered once.

Snakemake renders report/workflow.rst (and every caption) with docutils after appending one RST
hyperlink target per category (``.. _<category name>: javascript:app.showCategory(...)``, in
snakemake/report/__init__.py). docutils ends a target's name at the first ``": "``, so two categories
"1. Probe: a" and "1. Probe: b" both define "1. probe": a "Duplicate explicit target name" warning
that the report prints under the introduction.

The report is made from the embedded default config's experiments and the model-feedback experiment
of config/examples/text_loop.yaml (so every category is there) on a tree where only the figures
marked for the report exist: a `--report` reads those and the jobs' metadata (missing metadata is
only a warning), it runs no job. The rendering is checked in headless Chromium, since the report is
a React app that builds the page from embedded JSON in the browser.
"""

import html as html_lib
import json
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from conftest import ROOT, make_workdir, run_snakemake

NUMBERED = re.compile(r"^(\d+)\. \S")


def report_rules() -> set[str]:
    """The rules with an output marked ``report(...)``."""
    rules = set()
    for smk in (ROOT / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.M | re.S):
            output = re.search(r"^    output:\n(.*?)(?=^    \w+:|\Z)", body, re.M | re.S)
            if output and "report(" in output.group(1):
                rules.add(name)
    return rules


def report_variable(html: str, name: str):
    """A JSON value the self-contained report embeds as `<script id="name">var name = ...;</script>`."""
    match = re.search(rf'<script id="{name}">\s*var {name.replace("-", "_")} = (.*);\s*</script>', html)
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(working directory, report.html path, snakemake's output) of a report of the default config
    with every figure marked for the report present (small PNGs) and nothing else."""
    import yaml

    work = make_workdir(tmp_path_factory.mktemp("report"))
    experiments = yaml.safe_load((ROOT / "config/config.yaml").read_text())["experiments"]
    experiments["feedback"] = yaml.safe_load((ROOT / "config/examples/text_loop.yaml").read_text())[
        "experiments"]["feedback"]
    (work / "report.yaml").write_text(yaml.safe_dump({"experiments": experiments}))
    dry = run_snakemake(work, "--configfile", "report.yaml", "-n")
    wanted = report_rules()
    assert len(wanted) >= 7, wanted
    dry_out = dry.stdout + dry.stderr
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    output: (.*)$", dry_out, re.M)
    assert {rule for rule, _ in jobs} >= wanted, dry_out[-3000:]
    targets = []
    for rule, outputs in jobs:
        if rule not in wanted:
            continue
        for output in outputs.split(", "):
            path = work / output
            if path.suffix == ".png":
                figure = path
            else:  # a directory of {stat}.png
                figure = path / "model_loss.png"
            figure.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48), "steelblue").save(figure)
            targets.append(output)
    proc = run_snakemake(work, "--configfile", "report.yaml", "--report", "report.html", *targets)
    return work, work / "report.html", proc.stdout + proc.stderr


def rule_categories() -> set[str]:
    """The category names the rules give their report figures."""
    names = set()
    for smk in (ROOT / "rules").glob("*.smk"):
        names.update(re.findall(r'^\s*category="([^"]*)"', smk.read_text(), re.M))
    return names


def test_report_rules_category_names_are_numbered_once_and_have_no_colon():
    names = rule_categories()
    numbers = sorted(int(NUMBERED.match(name).group(1)) for name in names)
    assert numbers == list(range(1, len(names) + 1)), sorted(names)  # 1, 2, ... each once
    # docutils would end the link target's name at ": " (and a backquote is markup)
    assert not [name for name in names if ":" in name or "`" in name], names


@pytest.mark.workflow
def test_docutils_warns_about_nothing(report):
    _, path, output = report
    assert "Report created." in output
    assert not re.findall(r"\((?:INFO|WARNING|ERROR|SEVERE)/\d\)", output), output[-3000:]
    html = path.read_text(encoding="utf-8")
    categories, results = report_variable(html, "categories"), report_variable(html, "results")
    # every category of the rules is in the report: the default's experiments and model feedback
    assert set(categories) == rule_categories()
    assert any(sub.endswith(" (model stats)") for sub in categories["1. Probe stats and thresholds"])
    description = report_variable(html, "workflow-desc")
    assert "Juicebox: the data-model co-development loop" in description
    assert "system-message" not in description
    for result in results.values():
        assert "system-message" not in result["caption"], result["caption"]


@pytest.fixture(scope="session")
def chromium():
    """The path of a headless-capable Chromium; installed with apt-get (Debian package ``chromium``)
    where missing and this runs as root."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("no chromium on PATH, and installing the Debian package chromium needs root")
    if not shutil.which("apt-get"):
        pytest.skip("no chromium on PATH and no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        except subprocess.TimeoutExpired:
            pytest.skip(f"{' '.join(cmd)} did not finish in 20 minutes")
        if proc.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(cmd)} failed): {proc.stderr[-500:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but there is no chromium on PATH")
    return found


def headless(chromium: str, *args: str) -> subprocess.CompletedProcess:
    """Chromium without a display, sandbox or GPU, letting the page's scripts run for up to 10 s."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def visible_text(dom: str) -> str:
    """The text of a rendered page, without its scripts and styles, whitespace collapsed."""
    body = dom[dom.find("<body"):]
    body = re.sub(r"<(script|style|noscript)\b.*?</\1>", " ", body, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.mark.workflow
def test_front_page_renders_in_chromium_without_system_messages(report, chromium):
    work, path, _ = report
    proc = headless(chromium, "--dump-dom", path.as_uri())
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = visible_text(proc.stdout)
    # the React app ran: the introduction and the menu of categories are in the page
    assert "Juicebox: the data-model co-development loop" in text and "Seed: 42." in text, text[:2000]
    for marker in ("System Message", "WARNING/", "ERROR/", "SEVERE/", "Duplicate explicit target"):
        assert marker not in text, text[:3000]
    categories = report_variable(path.read_text(encoding="utf-8"), "categories")
    shown = [name for name in categories if name in text]
    assert shown == list(categories)
    numbers = re.findall(r"(?<![\w.])(\d+)\. (?=[A-Z])", text[: text.find("Juicebox: the data-model")])
    assert len(numbers) == len(categories) and len(set(numbers)) == len(numbers), numbers
    # one screenshot of the front page, kept next to the report for a look
    shot = work / "report.png"
    proc = headless(chromium, f"--screenshot={shot}", "--window-size=1400,1000", path.as_uri())
    assert proc.returncode == 0 and shot.stat().st_size > 10_000, proc.stderr[-3000:]
