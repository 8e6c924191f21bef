"""Answer extraction: the one place that turns a model's free text into option letters.

Scoring depends on every rule here, so the rules are few, explicit and proven by
tests/cases/extraction_cases.json. `extract_letters` tries them in this order; the first rule that
finds an answer decides, and nothing is ever guessed:

1. The fixed final line, `My final option: [X]` (SDD) or `My final options: [X, Y]` (SLL). Case,
   spacing, markdown (`**...**`) and missing brackets are tolerated, `is`/`are` may replace the colon;
   the LAST such line in the output wins. Its tail must be a letter list (`[B]`, `B, D`, `B and D`,
   `B. Osteophytes`; when it opens with brackets, only their content counts) or the text of options;
   anything else there (`none`, `[X]`, a refusal) makes the whole answer unparseable: the model gave
   its final word and it names no option.
2. Fallbacks, when there is no final line:
   a. an answer cue: `Answer: X`, `the answer is X`, `The correct options are B and D` (last one wins);
   b. LaTeX `\\boxed{B}` (last one wins);
   c. letters marked by brackets or bold, `(B)`, `[B]`, `**B**`: for SDD the only letter so marked
      anywhere in the output, for SLL the marked letters of the last line that has any;
   d. a last non-empty line that is nothing but a letter list (`B`, `**B.**`, `B, D`).
3. Option text instead of a letter (case-insensitive, whole words): for SDD the one option whose
   text appears in the output, when exactly one does; for SLL all options whose text appears on the
   last non-empty line.

Letters are A-E, limited to the number of options, and never part of a word. Lowercase letters count
only where they cannot be prose: in brackets or bold, alone on a line, or listed after a cue (final
line, answer cue) with no word following; a lone `A` followed by a word is the article too. So `a`,
the pronoun `I` and letters inside words are never answers.
SDD (`multi=False`) with several different letters, refusals and `none of the above` give None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spinebench import LETTERS

_FINAL_LINE = re.compile(
    r"my\s+final\s+options?[\s*_]*(?:[:=]|\bis\b|\bare\b)?[\s*_]*(?P<tail>[^\n]*)", re.IGNORECASE
)
_ANSWER_CUE = re.compile(
    r"(?:\banswers?|\b(?:correct|right|best)\s+(?:options?|choices?))[\s*_]*"
    r"(?:[:=]|\bis\b|\bare\b|\bwould\s+be\b)[\s*_]*(?P<tail>[^\n]*)",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\boxed\{(?P<tail>[^{}]*)\}")
_MARKED = re.compile(  # (B) [B] **B** __B.__
    r"\(\s*([A-Ea-e])\s*\)|\[\s*([A-Ea-e])\s*\]|(?:\*\*|__)\s*([A-Ea-e])\s*[.:)]?\s*(?:\*\*|__)"
)
# A letter that is not part of a word, maybe bracketed; a list joins them with `,` `;` `&` `and` `or`
# or spaces.
_ITEM = r"(?:[(\[]\s*)?[A-Ea-e](?![A-Za-z])(?:\s*[)\]])?"
_LIST = re.compile(rf"{_ITEM}(?:\s*(?:,|;|&|\band\b|\bor\b|\s)\s*{_ITEM})*", re.IGNORECASE)
_LETTER = re.compile(r"(?<![A-Za-z])[A-Ea-e](?![A-Za-z])")
_MARKDOWN = re.compile(r"[*_`]")
_PUNCTUATION = " .!?:;,)]"


def extract_letters(output: str, options: Sequence[str], multi: bool) -> list[str] | None:
    """The sorted unique letters the output answers, or None when it gives no valid answer."""
    letters = _decide(output, options, multi)
    if not letters or (not multi and len(letters) > 1) or not letters <= set(LETTERS[: len(options)]):
        return None
    return sorted(letters)


def _decide(output: str, options: Sequence[str], multi: bool) -> set[str] | None:
    finals = [match["tail"] for match in _FINAL_LINE.finditer(output) if re.search(r"\w", match["tail"])]
    if finals:
        tail = finals[-1]
        slot = re.match(r"[\s*_]*\[([^\]]*)\]", tail)  # `[B] (C is less likely)`: the brackets answer
        letters = _letter_list(slot[1], whole=True) if slot else _letter_list(tail, whole=False)
        return letters or _option_texts(tail, options, multi)
    for rule in (_answer_cue, _boxed, _marked, _lone_letters):
        letters = rule(output, multi)
        if letters:
            return letters
    return _option_texts(_last_line(output) if multi else output, options, multi)


def _letter_list(text: str, whole: bool) -> set[str] | None:
    """Letters listed at the start of `text` (all of it when `whole`), unless they read as prose.

    `B because ...` and `B. Osteophytes` name B; but a lone `A` or any lowercase letter followed by a
    word is prose (`A fracture of L1`, `a herniated disc`), not an answer.
    """
    text = _MARKDOWN.sub(" ", text).strip()
    match = _LIST.match(text)
    if not match:
        return None
    listed, rest = match.group(), text[match.end() :]
    letters = _LETTER.findall(listed)
    if whole and rest.strip(_PUNCTUATION):
        return None
    if re.match(r"\s+[A-Za-z]", rest) and (listed.strip() in ("A", "a") or any(c.islower() for c in letters)):
        return None
    return {letter.upper() for letter in letters}


def _answer_cue(output: str, multi: bool) -> set[str] | None:
    cues = list(_ANSWER_CUE.finditer(output))
    return _letter_list(cues[-1]["tail"], whole=False) if cues else None


def _boxed(output: str, multi: bool) -> set[str] | None:
    boxes = list(_BOXED.finditer(output))
    return _letter_list(boxes[-1]["tail"], whole=True) if boxes else None


def _marked(output: str, multi: bool) -> set[str] | None:
    if multi:
        lines = [line for line in output.splitlines() if _MARKED.search(line)]
        output = lines[-1] if lines else ""
    letters = {next(group for group in match.groups() if group).upper() for match in _MARKED.finditer(output)}
    return letters or None


def _lone_letters(output: str, multi: bool) -> set[str] | None:
    return _letter_list(_last_line(output), whole=True)


def _option_texts(text: str, options: Sequence[str], multi: bool) -> set[str] | None:
    """Letters of the options whose full text appears in `text` (exactly one for SDD)."""
    mentions = {
        letter: [found.span() for found in re.finditer(_whole_words(option), text, re.IGNORECASE)]
        for letter, option in zip(LETTERS, options)
    }
    spans = [span for own in mentions.values() for span in own]

    def inside_another(span: tuple[int, int]) -> bool:  # `Stenosis` inside `Spinal canal stenosis`
        return any(s <= span[0] and span[1] <= e and (s, e) != span for s, e in spans)

    named = {letter for letter, own in mentions.items() if any(not inside_another(span) for span in own)}
    if not named or (not multi and len(named) > 1):
        return None
    return named


def _whole_words(text: str) -> str:
    return rf"(?<!\w){re.escape(text.strip())}(?!\w)"


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def reply_text(text: str | Sequence[str], post_processed: Sequence[str] | None) -> str:
    """The reply as the scorer reads it, from a lighteval ModelResponse's `text` and `text_post_processed`.

    lighteval 0.13's VLM backend stores the generation as a bare string (and its post-processing then splits
    it into characters): such a string is read whole. Other backends store a list: its first final text.
    """
    if isinstance(text, str):
        return text
    final = text if post_processed is None else post_processed
    return final[0] if final is not None and len(final) else ""
