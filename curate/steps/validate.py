"""validate: structural checks on canonical records; each failure is a named reason."""

from __future__ import annotations

import polars as pl

from curate.steps import BuildContext, Step, StepParams, StepResult, split_by

YES_NO_MAYBE = ("yes", "no", "maybe")

#: A stem that refers to a picture the data does not carry (issue 11): "ECG is shown in the picture",
#: "the instrument given", "structure marked with arrow", "A photograph of the rash is shown". On the real
#: files it flags 56 of 1,273 MedQA test stems, 47 of 1,030 MedQA train, 9 of 3,683 MedMCQA dev, 16 HEAD-QA
#: train stems (all of which also have an `image`), 1 of 50 UltraMedical examples (a MedQA photograph
#: item), and nothing in MedQuAD or ChatDoctor; every hit read by hand refers to a missing picture.
_NOUN = (r"(?:image|picture|figure|fig\.?|photo(?:graph)?|diagram|x-?ray|radiograph|illustration|slide|"
         r"ecg|ekg|instrument|structure|specimen|lesion|device|graph)s?\b")
IMAGE_REFERENCE = (
    r"(?i)\b(?:shown|seen|given|depicted|illustrated|displayed|presented|marked|labell?ed|indicated|pointed)\s+"
    r"(?:in|on|by)\s+(?:the\s+)?(?:(?:accompanying|following|given|above|below|attached)\s+)?"
    r"(?:image|picture|figure|fig\.?|photo(?:graph)?|diagram|x-?ray|radiograph|illustration|slide)s?\b"
    r"|\b" + _NOUN + r"\s+(?:is\s+|are\s+)?(?:shown|given|depicted|displayed|illustrated|marked|labell?ed|below|above)\b"
    r"|\b" + _NOUN + r"[^.?!\n]{0,60}?\b(?:is|are)\s+(?:shown|provided|attached)\b"
    r"|\b(?:marked|labell?ed|arrowed)\s+(?:structure|area|part|region|bone|muscle|nerve|vessel|organ)s?\b"
    r"|\b(?:identify|name)\s+the\s+(?:instrument|structure|device)\b"
    r"|\bpointed\s+(?:by|with)\s+(?:the\s+)?arrow|\barrows?\s+(?:mark|indicate|point)s?\b"
    r"|\bin\s+the\s+(?:following|given|above|below)\s+(?:image|picture|figure|photo(?:graph)?|x-?ray|ecg|diagram)\b"
)


class ValidateParams(StepParams):
    min_options: int = 2
    #: Reject rows whose stem refers to an image we do not have (HEAD-QA `image` field).
    reject_images: bool = True
    #: Reject rows whose question refers to an image even when the source has no image field.
    image_phrases: list[str] = [IMAGE_REFERENCE]
    #: Reject MCQ rows where two options have the same text (ambiguous key).
    reject_duplicate_option_text: bool = True


class Validate(Step):
    name = "validate"
    scope = "row"
    Params = ValidateParams
    description = ("Non-empty stem, enough distinct options, answer key among the options and pointing at a "
                   "non-empty option, no duplicate labels.")

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: ValidateParams = self.params
        labels = pl.col("options").list.eval(pl.element().struct.field("label"))
        texts = pl.col("options").list.eval(pl.element().struct.field("text").str.to_lowercase())
        # labels of options whose text is null or blank: a gold answer pointing at one is wrong training data
        blank_labels = pl.col("options").list.eval(
            pl.when(pl.element().struct.field("text").fill_null("").str.strip_chars() == "")
            .then(pl.element().struct.field("label")))
        n_texts = texts.list.eval(pl.element().filter(pl.element().str.len_chars() > 0)).list.n_unique()
        is_mcq = pl.col("task") == "mcq"
        blank = lambda c: pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")  # noqa: E731
        has_image = (
            (pl.col("image").is_not_null() & (pl.col("image").str.strip_chars() != ""))
            if "image" in frame.columns and p.reject_images
            else pl.lit(False)
        )
        mentions = (pl.col("question").fill_null("").str.contains("|".join(f"(?:{x})" for x in p.image_phrases))
                    if p.image_phrases and p.reject_images else pl.lit(False))
        # The first failing rule names the reason (order = most fundamental first).
        rules: list[tuple[pl.Expr, str, pl.Expr]] = [
            (blank("question"), "empty_question", pl.lit("question is empty")),
            (pl.col("task").is_null(), "missing_task", pl.lit("task is null")),
            (has_image, "needs_image",
             pl.lit("question refers to an image: ") + pl.col("image") if "image" in frame.columns else pl.lit("")),
            (mentions, "needs_image", pl.lit("question refers to an image the source does not carry: ")
             + pl.col("question").str.extract("(" + "|".join(f"(?:{x})" for x in p.image_phrases) + ")")
             if p.image_phrases else pl.lit("")),
            (blank("answer"), "empty_answer", pl.lit("answer is empty")),
            (is_mcq & (labels.list.n_unique() < labels.list.len()), "duplicate_option_labels",
             pl.lit("labels: ") + labels.list.join(",")),
            (is_mcq & (n_texts < p.min_options), "too_few_options",
             pl.lit(f"fewer than {p.min_options} distinct non-empty options")),
            (is_mcq & ~labels.list.contains(pl.col("answer")), "answer_not_in_options",
             pl.lit("answer '") + pl.col("answer") + pl.lit("' not among labels ") + labels.list.join(",")),
            (is_mcq & blank_labels.list.contains(pl.col("answer")), "answer_option_empty",
             pl.lit("the gold option '") + pl.col("answer") + pl.lit("' has no text")),
            ((pl.col("task") == "yes_no_maybe") & ~pl.col("answer").str.to_lowercase().is_in(YES_NO_MAYBE),
             "invalid_yes_no_maybe", pl.lit("answer '") + pl.col("answer") + pl.lit("' is not yes/no/maybe")),
        ]
        if p.reject_duplicate_option_text:
            rules.append((is_mcq & (texts.list.n_unique() < texts.list.len()), "duplicate_option_text",
                          pl.lit("two options share the same text")))
        reason = pl.when(rules[0][0]).then(pl.lit(rules[0][1]))
        detail = pl.when(rules[0][0]).then(rules[0][2])
        for cond, name, det in rules[1:]:
            reason = reason.when(cond).then(pl.lit(name))
            detail = detail.when(cond).then(det)
        kept, rejected = split_by(frame, reason.otherwise(None), detail.otherwise(None))
        return StepResult(kept=kept, rejected=rejected)
