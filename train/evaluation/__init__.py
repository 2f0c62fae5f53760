"""`train eval` / `train compare`: score a model on the benchmark pack and put the score next to its data.

Modules: `config` (the YAML config), `questions` (pack sets, prompts, answer scoring: the one home for
both), `harness` (zero-shot through lm-eval: served or local checkpoint), `schemes` (sc-cot and
medprompt on synth's teacher client and call cache), `report` (eval.json, MultiMedQA score, model card,
compare table, Aloe reference numbers).
"""
