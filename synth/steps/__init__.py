"""Teacher-backed steps (cot, judge, preference, decontaminate_rephrase, score); pyproject declares them as
`medcurate.steps` entry points, which is how the curate core finds them."""
