"""Answer extraction: the one place that turns a model's free text into option letters.

Scoring depends on every rule here, so the rules are few, explicit and proven by
tests/cases/extraction_cases.json (hand-read replies in the styles of GPT-4o, Qwen2.5-VL, LLaVA, MedGemma,
reasoning models and in Chinese). Nothing is ever guessed: a reply the rules cannot read scores zero and
is counted as a parse failure.

0. The answer part. Reasoning is not the answer: a `<think>`/`<thinking>`/`<reasoning>` (or `◁think▷`)
   block is removed; when only a closing tag is there (the chat template opened the block), everything up
   to it is reasoning; a block opened and never closed (cut by the budget) runs to the end of the reply.
   Full-width forms are folded to ASCII (NFKC: `：` `，` `Ｂ`), `【】`/`〔〕` read as `[]`, `、` as `,`.
1. The fixed final line, `My final option: [X]` (SDD) or `My final options: [X, Y]` (SLL), also
   `我的最终选项：[X]`. Case, markdown (`**...**`) and missing brackets are tolerated; the colon may be
   `is`, `are`, `is:`, `would be`, `-` or nothing; a final line with nothing after it is read from the next
   line. The LAST final line wins, and it decides: its tail must be a letter list (`[B]`, `B, D`,
   `[A], [C]`, `B, C and E`, `[Option B]`, letters followed by their own option text: `A (L1/L2), C - L3/L4`,
   `B. Osteophytes`; when it opens with brackets, only them and their joiners count) or the text of
   options. Anything else there (`none`, `[X]`, a refusal, a hedge `[B] or [D]`) makes the whole reply
   unparseable: the model gave its final word and it names no single reading.
2. Fallbacks, when there is no final line:
   a. an answer cue: `Answer: X`, `the answer is X`, `The correct options are B and D`, `答案：C`,
      `A is the correct answer` (the last one wins; its tail may be option text);
   b. LaTeX `\\boxed{B}` (the last one wins);
   c. letters marked by brackets or bold, `(B)`, `[B]`, `**B**`: for SDD the only letter so marked
      anywhere, for SLL the marked letters of the last line that has any, provided neither that line nor
      what follows names another option (`option E`, or its text): else unparseable;
   d. lines that are nothing but a letter list (`B`, `**B.**`, `B, D`, `C. L3/L4`): the block of them
      that ends the reply (`C` then `D` on the next line: C and D), else a first line followed by an
      explanation; not when other lines list other letters, nor when the block repeats every option
      with its text (echoed options).
3. Option text instead of a letter (case-insensitive, whole words), leaving out mentions their clause
   calls absent (`no osteophytes`, `L3/L4 appears normal`): for SDD the one option named in the answer
   part, when exactly one is; for SLL the options named on the last line that names any, when no earlier
   line names another.

Letters are A-E, limited to the number of options, and never part of a word. Lowercase letters count
only where they cannot be prose: in brackets or bold, alone on a line, or listed after a cue with no word
following. A lone capital `A` followed by a word is the article (`Answer: A fracture of L1`), unless the
word is a connective that follows an answer (`A because ...`, `A since ...`). `or` between two letters
is a hedge, never a list. A letter labelled with another option's text (`A (L4/L5)` where A is L1/L2)
contradicts itself: unparseable. SDD (`multi=False`) with several letters gives None.

How this differs from two common parsers, and why:

| reply | VLMEvalKit `can_infer` | lmms-eval MMMU parser | here |
|---|---|---|---|
| nothing readable | `False`, then an LLM judge | a random letter | None, counted (judge optional) |
| several letters (`(A) and (C) ... (C) fits`) | False | the last one mentioned | None in SDD |
| `A` anywhere in a reply of > 3 words | False (any answer) | read | article only when a word follows it |
| option text | the one option that is a substring | the last found (> 5 words) | whole words, one (SDD) |
| final line / cue | not special | not special | decides; its failure is not rescued |
| multi-answer sets | not supported | not supported | lists, bracket runs, labelled letters |
| hedges `B or D` | False (two letters) | the last letter | None |
| `<think>` blocks | not special | not special | stripped first |

Both tools read single-answer items only and look for letters anywhere; SpineBench asks for a fixed
final line and has multi-answer items, so the final line is authoritative and prose letters are a
fallback. lmms-eval's random pick would put chance accuracy into a model's score; `can_infer`'s article
guard drops correct answers that merely contain the word `A`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from spinebench import LETTERS

_CLOSED_BLOCK = re.compile(
    r"<(think|thinking|reasoning)>.*?</\1>|◁think▷.*?◁/think▷", re.IGNORECASE | re.DOTALL
)
_CLOSING = re.compile(r"</(?:think|thinking|reasoning)>|◁/think▷", re.IGNORECASE)
_OPENING = re.compile(r"<(?:think|thinking|reasoning)>|◁think▷", re.IGNORECASE)
_FOLD = str.maketrans({"【": "[", "】": "]", "〔": "[", "〕": "]", "〖": "[", "〗": "]", "、": ","})

_SEP = r"(?:[ \t*_]*(?:would\s+be|is|are|was|:|=|-|–|—|是|为))*[ \t*_]*"
_FINAL_LINE = re.compile(
    rf"(?:\bmy\s+final\s+options?\b|我的最终选[项择]){_SEP}(?P<tail>[^\n]*)", re.IGNORECASE
)
_ANSWER_CUE = re.compile(
    r"(?:\banswers?\b|\b(?:correct|right|best|most\s+likely)\s+(?:options?|choices?|answers?)\b"
    rf"|(?:最终|正确)?答案)(?=[\s*_]*(?:would\s+be|is|are|:|=|是|为)){_SEP}(?=(?P<tail>[^\n]*))",
    re.IGNORECASE,
)
_LETTER_FIRST_CUE = re.compile(  # `A is the correct answer`
    r"(?P<tail>(?<![A-Za-z])[(\[]?\s*[A-E]\s*[)\]]?)\s+is\s+the\s+"
    r"(?:(?:correct|right|best|most\s+likely)\s+)?(?:answer|option|choice)\b"
)
_BOXED = re.compile(r"\\boxed\{(?P<tail>[^{}]*)\}")
_MARKED = re.compile(  # (B) [B] **B** __B.__
    r"\(\s*([A-Ea-e])\s*\)|\[\s*([A-Ea-e])\s*\]|(?:\*\*|__)\s*([A-Ea-e])\s*[.:)]?\s*(?:\*\*|__)"
)
_OPTION_WORD = r"(?:(?:options?|choices?|选项)\s*)?"
_LETTER = r"(?<![A-Za-z])[A-Ea-e](?![A-Za-z])"
_JOIN = re.compile(r"\s*(?:(?:,|;|&)\s*(?:and\s+)?|\band\s+|和|及|与)\s*", re.IGNORECASE)
_HEDGE = re.compile(rf"\s*(?:\bor\b|或)\s*\[?\s*{_OPTION_WORD}{_LETTER}", re.IGNORECASE)
_BRACKET = re.compile(r"\s*\[([^\[\]]*)\]")
_OPTION_NAMED = re.compile(r"\b(?:option|choice)\s+([A-Ea-e])(?![A-Za-z])", re.IGNORECASE)
_MARKDOWN = re.compile(r"[*_`]")
_PUNCTUATION = " .!?:;,)]"
# Words after which a lone capital A is still the letter: they explain an answer, not follow an article.
_CONNECTIVES = frozenset(
    {"because", "since", "as", "given", "due", "based", "considering", "which", "is", "fits"}
)
# A reading that names alternatives (`B or D`) or contradicts itself (`A (L4/L5)` when A is L1/L2):
# unparseable, and no later rule may rescue it.
NO_READING = "no reading"
# Option texts mentioned as absent do not name their option: `no osteophytes`, `L3/L4 appears normal`.
_CLAUSE = re.compile(r"[,.;:!?\n()]|\b(?:while|but|whereas|although|though)\b", re.IGNORECASE)
_NEGATED_BEFORE = re.compile(
    r"\b(?:no|not|without|absence|absent|exclude[sd]?|rule[sd]?\s+out|unlikely|rather\s+than|instead\s+of|"
    r"neither|nor)\b|不|无|没有|排除",
    re.IGNORECASE,
)
_NEGATED_AFTER = re.compile(
    r"\b(?:normal|unremarkable|preserved|spared|intact|excluded|unlikely|absent|ruled\s+out)\b", re.IGNORECASE
)


def extract_letters(output: str, options: Sequence[str], multi: bool) -> list[str] | None:
    """The sorted unique letters the output answers, or None when it gives no valid answer."""
    options = [_fold(option) for option in options]
    letters = _decide(answer_part(output), options, multi)
    if not isinstance(letters, set) or not letters:
        return None
    if (not multi and len(letters) > 1) or not letters <= set(LETTERS[: len(options)]):
        return None
    return sorted(letters)


def answer_part(output: str) -> str:
    """The reply without its reasoning blocks, full-width forms folded (rule 0 above)."""
    text = _CLOSED_BLOCK.sub("\n", output)
    closing = list(_CLOSING.finditer(text))
    if closing:  # the template opened the block: everything before its end is reasoning
        text = text[closing[-1].end() :]
    opening = _OPENING.search(text)
    if opening:  # opened and never closed: cut by the budget before any answer
        text = text[: opening.start()]
    return _fold(text)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_FOLD)


def _decide(output: str, options: Sequence[str], multi: bool) -> set[str] | str | None:
    finals = list(_FINAL_LINE.finditer(output))
    if finals:
        last = finals[-1]
        tail = last["tail"] if re.search(r"\w", last["tail"]) else _next_line(output, last.end())
        return _read_tail(tail, options)
    for rule in (_answer_cue, _boxed, _marked, _lone_letters):
        letters = rule(output, options, multi)
        if letters:
            return letters
    return _level_texts(output, options) if multi else _option_texts(output, options, multi)


def _read_tail(tail: str, options: Sequence[str]) -> set[str] | str | None:
    """The letters a final line names: a bracket run, else a letter list, else option texts."""
    tail = _MARKDOWN.sub(" ", tail)
    position, contents = 0, []
    while match := _BRACKET.match(tail, position):
        contents.append(match[1])
        position = match.end()
        joined = _JOIN.match(tail, position)
        if joined and _BRACKET.match(tail, joined.end()):
            position = joined.end()
    if contents:
        if _HEDGE.match(tail, position):
            return NO_READING
        letters: set[str] = set()
        for content in contents:
            found = _letter_list(content, options, whole=True) or _option_texts(content, options, multi=True)
            if not isinstance(found, set):
                return found
            letters |= found
        return letters
    return _letter_list(tail, options, whole=False) or _option_texts(tail, options, multi=True)


def _letter_list(text: str, options: Sequence[str], whole: bool) -> set[str] | str | None:
    """Letters listed at the start of `text` (all of it when `whole`), unless they read as prose.

    An item is a letter, maybe bracketed or after `option`, maybe followed by its own option text
    (`A (L1/L2)`, `A - L1/L2`, `B. Osteophytes`). `B because ...` names B; a lone `A` or any lowercase
    letter followed by a word is prose (`A fracture of L1`, `a herniated disc`).
    """
    text = _MARKDOWN.sub(" ", text).strip()
    label = _label_pattern(options)
    item = re.compile(
        rf"{_OPTION_WORD}[(\[]?\s*(?P<letter>{_LETTER})(?:\s*[)\]])?(?P<label>{label})?", re.IGNORECASE
    )
    letters, lowercase, position = [], False, 0
    while match := item.match(text, position):
        letter = match["letter"]
        if match["label"] and not _labels_itself(match["label"], letter, options):
            return NO_READING
        letters.append(letter.upper())
        lowercase |= letter.islower() and not re.match(r"[(\[]", match.group())
        position = match.end()
        joined = _JOIN.match(text, position)
        if not joined or not item.match(text, joined.end()):
            break
        position = joined.end()
    if not letters:
        return None
    rest = text[position:]
    if _HEDGE.match(rest):
        return NO_READING
    if whole and rest.strip(_PUNCTUATION):
        return None
    word = re.match(r"\s*([A-Za-z]+)", rest)
    if word and (lowercase or (letters == ["A"] and text[:position].strip() == "A"
                               and word[1].lower() not in _CONNECTIVES)):
        return None
    return set(letters)


def _label_pattern(options: Sequence[str]) -> str:
    texts = "|".join(re.escape(option.strip()) for option in sorted(options, key=len, reverse=True) if option)
    if not texts:
        return r"(?!)"
    return rf"\s*(?:[-–—:.)]\s*|\s)\(?\s*(?:{texts})(?!\w)\s*\)?"


def _labels_itself(label: str, letter: str, options: Sequence[str]) -> bool:
    """Whether the text after a letter is that letter's own option (not another one's)."""
    named = label.strip(" -–—:.()").lower()
    index = LETTERS.index(letter.upper())
    return index < len(options) and options[index].strip().lower() == named


def _answer_cue(output: str, options: Sequence[str], multi: bool) -> set[str] | str | None:
    cues = sorted(
        [*_ANSWER_CUE.finditer(output), *_LETTER_FIRST_CUE.finditer(output)], key=lambda cue: cue.start()
    )
    if not cues:
        return None
    tail = cues[-1]["tail"]
    if tail.lstrip(" *_").startswith("["):
        return _read_tail(tail, options)
    return _letter_list(tail, options, whole=False) or _option_texts(tail, options, multi)


def _boxed(output: str, options: Sequence[str], multi: bool) -> set[str] | str | None:
    boxes = list(_BOXED.finditer(output))
    return _letter_list(boxes[-1]["tail"], options, whole=True) if boxes else None


def _marked(output: str, options: Sequence[str], multi: bool) -> set[str] | str | None:
    if not multi:
        return _marked_letters(output) or None
    lines = output.splitlines()
    marked = [index for index, line in enumerate(lines) if _MARKED.search(line)]
    if not marked:
        return None
    letters = _marked_letters(lines[marked[-1]])
    rest = "\n".join(lines[marked[-1] :])  # the marked line and what follows it
    named = _option_texts(rest, options, multi=True) or set()
    named |= {letter.upper() for letter in _OPTION_NAMED.findall(rest)}
    return NO_READING if named - letters else letters


def _marked_letters(text: str) -> set[str]:
    return {next(group for group in match.groups() if group).upper() for match in _MARKED.finditer(text)}


def _lone_letters(output: str, options: Sequence[str], multi: bool) -> set[str] | str | None:
    """Lines that are nothing but a letter list: the block that ends the reply (`C` then `D`: C and D),
    else a first line before an explanation (`B` then prose). None when other lines list other letters or
    the block repeats every option with its text (echoed options, not an answer)."""
    lines = [line for line in output.splitlines() if line.strip()]
    listed = [_letter_list(line, options, whole=True) for line in lines]
    if listed and isinstance(listed[-1], set):
        start = len(listed)
        while start and isinstance(listed[start - 1], set):
            start -= 1
        block = lines[start:]
        answer = set().union(*listed[start:])
    elif listed and isinstance(listed[0], set):
        start, block, answer = 1, lines[:1], listed[0]
    else:
        return None
    others = set().union(*(found for found in listed[:start] if isinstance(found, set)))
    labelled = all(len(_MARKDOWN.sub("", line).strip()) > 3 for line in block)  # `C. L3/L4`, not `C`
    echoed = len(block) == len(options) > 1 and labelled
    return None if others - answer or echoed else answer


def _option_texts(text: str, options: Sequence[str], multi: bool) -> set[str] | None:
    """Letters of the options whose full text appears in `text` (exactly one for SDD)."""
    mentions = {
        letter: [found.span() for found in re.finditer(_whole_words(option), text, re.IGNORECASE)
                 if not _negated(text, *found.span())]
        for letter, option in zip(LETTERS, options)
        if option.strip()
    }
    spans = [span for own in mentions.values() for span in own]

    def inside_another(span: tuple[int, int]) -> bool:  # `Stenosis` inside `Spinal canal stenosis`
        return any(s <= span[0] and span[1] <= e and (s, e) != span for s, e in spans)

    named = {letter for letter, own in mentions.items() if any(not inside_another(span) for span in own)}
    if not named or (not multi and len(named) > 1):
        return None
    return named


def _negated(text: str, start: int, end: int) -> bool:
    """Whether the clause holding text[start:end] says it is absent (`no osteophytes`, `L3/L4 is normal`)."""
    before = _CLAUSE.split(text[:start])[-1]
    after = _CLAUSE.split(text[end:])[0]
    return bool(_NEGATED_BEFORE.search(before) or _NEGATED_AFTER.search(after))


def _level_texts(output: str, options: Sequence[str]) -> set[str] | None:
    """SLL by option text: the options named on the last line that names any, when no earlier line names
    another (`L2/L3 and L3/L4 are narrowed` then `worst at L3/L4` is no single reading)."""
    named = [found for line in output.splitlines() if (found := _option_texts(line, options, multi=True))]
    if not named or set().union(*named[:-1]) - named[-1]:
        return None
    return named[-1]


def _whole_words(text: str) -> str:
    return rf"(?<!\w){re.escape(text.strip())}(?!\w)"


def _next_line(output: str, position: int) -> str:
    lines = [line for line in output[position:].splitlines() if line.strip(" *_")]
    return lines[0] if lines else ""


def figures(parsed: Sequence[str] | None, gold: Sequence[str], multi: bool) -> dict[str, float]:
    """Per-item figures of a parsed answer, named by task so that mixed tasks average per task.

    SDD: acc_dis, parse_fail_dis. SLL: acc_loc (exact set), pre_loc and recall_loc of the parsed set
    (both 0 when nothing parses), parse_fail_loc.
    """
    parsed = None if parsed is None else sorted(parsed)
    gold = sorted(gold)
    failed = float(parsed is None)
    if not multi:
        return {"acc_dis": float(parsed == gold), "parse_fail_dis": failed}
    hits = len(set(parsed or ()) & set(gold))
    return {
        "acc_loc": float(parsed == gold),
        "pre_loc": hits / len(parsed) if parsed else 0.0,
        "recall_loc": hits / len(gold),
        "parse_fail_loc": failed,
    }


def reply_text(text: str | Sequence[str]) -> str:
    """The raw reply, from a lighteval ModelResponse's `text`, whatever the backend.

    lighteval 0.13's VLM backend stores the generation as a bare string (and its post-processing then
    splits it into characters), other backends a list whose first item is the reply; some of them strip
    reasoning tags into `text_post_processed`, some do not. So the raw text is always read and
    `answer_part` strips reasoning here, the same way on every path (post-processed text is not read).
    """
    if isinstance(text, str):
        return text
    return text[0] if text is not None and len(text) else ""
