"""The rule graph in the README (docs/rulegraph.svg) is the workflow's current one."""

import html
import re

import pytest

from conftest import ROOT, run_snakemake

pytestmark = pytest.mark.workflow

SVG = ROOT / "docs" / "rulegraph.svg"


def labelled_edges(nodes: dict[str, str], edges: list[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(nodes[a], nodes[b]) for a, b in edges}


def dot_graph(dot: str) -> tuple[set[str], set[tuple[str, str]]]:
    nodes = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)
    return set(nodes.values()), labelled_edges(nodes, edges)


def svg_graph(svg: str) -> tuple[set[str], set[tuple[str, str]]]:
    nodes = dict(re.findall(r'class="node">\s*<title>(\d+)</title>.*?<text[^>]*>(\w+)</text>', svg, re.S))
    edges = [tuple(html.unescape(t).split("->"))
             for t in re.findall(r'class="edge">\s*<title>([^<]+)</title>', svg)]
    return set(nodes.values()), labelled_edges(nodes, edges)


def test_readme_rule_graph_is_current(workdir):
    # `make dag` with the default config, in a fresh working directory: what the root's results/
    # and .snakemake/ hold (after `make demo`) is no part of the graph, and nothing is written there.
    proc = run_snakemake(workdir, "--rulegraph")
    rules, edges = dot_graph(proc.stdout)
    assert {"probe", "rollout_shard", "train_dpo", "eval_summary"} <= rules and edges
    assert svg_graph(SVG.read_text()) == (rules, edges), "docs/rulegraph.svg is stale: run `make dag`"
    assert "docs/rulegraph.svg" in (ROOT / "README.md").read_text()
