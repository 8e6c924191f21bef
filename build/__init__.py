"""SpineBench's offline build: raw releases -> image shards -> items -> Hub folder.

Run from the repo root as `python -m build <command>`; `python -m build --help` lists the commands.
"""
