"""Juicebox's library: the code of the workflow's stages, imported by the scripts of its rules.

Installed as the distribution ``juicebox`` (``pip install --no-deps -e .`` in the repository root;
each conda env of ``envs/`` installs it too), so ``import juicebox`` works in any interpreter of
the environment, whatever its working directory. Importing a module loads only what it needs at
the top: torch, transformers, vLLM, Data-Juicer and the like are imported where they are used.
"""
