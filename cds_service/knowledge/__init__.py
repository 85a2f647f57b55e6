"""Clinical knowledge as data: the thresholds the rules compare, and the card content of
``cards/*.toml`` (wording, evidence, conflicts, substitutes and who may get them), loaded and
checked once per process. The checks decide with it; the renderer words cards with it.
"""
