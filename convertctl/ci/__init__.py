"""CI logic: comparing two runs (`diff`) and fanning recipes out over a build matrix and back (`fanout`).

Pure logic on recipes and manifests; the thin commands are cli/diff.py, cli/plan.py, cli/merge.py and `run FOLDER`.
"""
