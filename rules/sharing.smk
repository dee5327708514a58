# Work shared between experiments (juicebox.sharing): an experiment whose stage would be computed
# exactly as another's (same settings up to that stage; a sweep's points, mostly) gets that stage's
# outputs as hard links to the first such experiment's, made by a share_<stage> job, instead of
# computing them again. Included last: every rule writing a stage's folder gives way to its share
# rule for the experiments that do not own the stage.
from juicebox.layout import share_patterns
from juicebox.sharing import (
    STAGES,
    link_tree,
    names_pattern,
    owner_path,
    owners,
    producers,
)

OWNERS = owners(
    EXPERIMENTS,
    CONFIG["seed"],
    [
        point
        for sweep in CONFIG["sweep_points"].values()
        for point in sweep["points"]
        if point != sweep["base"]
    ],
)


_producers = producers(workflow.rules)

for share_stage in STAGES:
    share_borrowers = names_pattern(
        e for e, owner in OWNERS[share_stage].items() if e != owner
    )
    share_files, share_dirs = share_patterns(share_stage)
    for share_suffix, share_pattern, share_output in (
        ("", share_files, f"{layout.RESULTS}/{{exp}}/{{path}}"),
        ("_dir", share_dirs, directory(f"{layout.RESULTS}/{{exp}}/{{path}}")),
    ):
        if share_pattern is None:
            continue

        rule:
            name:
                f"share_{share_stage}{share_suffix}"
            input:
                owner_path(OWNERS, share_stage),
            output:
                share_output,
            log:
                layout.log("share", "share/{path}"),
            wildcard_constraints:
                exp=share_borrowers,
                path=share_pattern,
            localrule: True
            run:
                link_tree(input[0], output[0])
                Path(log[0]).write_text(f"{output[0]}: hard links to {input[0]}\n")

        for share_rule in _producers[share_stage]:
            workflow.ruleorder(f"share_{share_stage}{share_suffix}", share_rule)


# (format() of the rules' shell commands sees this file's names: leave none of the loop's behind)
del (
    share_stage,
    share_borrowers,
    share_files,
    share_dirs,
    share_suffix,
    share_pattern,
    share_output,
    share_rule,
)
