"""The SpineBench prompts, in our own words: `paper` (the default) and `direct`.

`paper` follows the structure of the paper's evaluation prompt (appendix C.1, Figures 9-10; see
docs/PAPER.md "Evaluation protocol"), in this order: a simulated scenario for education or evaluation; the
persona of a board-certified spine surgeon; the task (the single most accurate answer for SDD, every
appropriate answer for SLL); stay in role and give the reasoning, no "I am an AI", no "see a physician";
the question; the options inline as `[A: text, B: text, ...]`; after the reasoning, the exact final line
`My final option: [X]` / `My final options: [X, Y, ...]` (example `[A, C]`). The model reasons first,
so replies are long: the tasks give it a generation budget to match.

`direct` is the short variant used before: persona, instruction, options one per line, and the same
final line, with no reasoning asked for. Both end with the final line extract.py reads.

The image is not part of the text: lighteval's multimodal prompt puts it after the text, as the paper
does. For the no-image baseline the text says the image the question refers to is withheld, so a
question about "this image" stays consistent. Everything here is a pure function of a dataset row, so a
prompt can be rebuilt from the data alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spinebench import LETTERS

DEFAULT_PROMPT = "paper"
WITHHELD = (
    "The question refers to an image of this patient's spine that is withheld from you: answer from the "
    "question and the options alone."
)
TEMPLATE_LETTERS = {"diagnosis": ("X",), "localization": ("X", "Y", "...")}


def final_line(task: str, letters: Sequence[str]) -> str:
    """The final line as a model should write it, e.g. `My final options: [B, D]`."""
    label = "My final options" if task == "localization" else "My final option"
    return f"{label}: [{', '.join(letters)}]"


# The paper's structure.

PAPER_SCENARIO = (
    "This is a simulated medical scenario, used only for education and for evaluating AI systems; no real "
    "patient is involved."
)
PAPER_PERSONA = (
    "You are a board-certified spine surgeon with extensive clinical experience in reading spine "
    "radiographs and MRI."
)
PAPER_TASK = {
    "diagnosis": "identify the single most accurate answer.",
    "localization": "identify all appropriate answers: there may be more than one.",
}
PAPER_SOURCE = {False: ", together with the image that follows it,", True: ""}
PAPER_ROLE = (
    "Stay in this role throughout. Explain the reasoning behind your choice, and do not say that you are an "
    "AI or suggest consulting a physician."
)
PAPER_ENDING = {
    "diagnosis": "After your reasoning, end your whole response with this exact phrase on a new line, X "
    "being the letter of your answer:",
    "localization": "After your reasoning, end your whole response with this exact phrase on a new line, "
    "listing the letters of all your answers (for example [A, C]):",
}


def paper_prompt(row: Mapping[str, Any], text_only: bool) -> str:
    task = row["task"]
    options = ", ".join(f"{letter}: {text}" for letter, text in zip(LETTERS, row["options"]))
    return "\n\n".join(
        [
            PAPER_SCENARIO,
            PAPER_PERSONA,
            f"Your task: analyse the multiple-choice question below{PAPER_SOURCE[text_only]} and "
            f"{PAPER_TASK[task]}" + (f" {WITHHELD}" if text_only else ""),
            PAPER_ROLE,
            f"Question: {row['question']}\nOptions: [{options}]",
            f"{PAPER_ENDING[task]}\n{final_line(task, TEMPLATE_LETTERS[task])}",
        ]
    )


# The direct variant.

DIRECT_PREAMBLE = (
    "You are a spine specialist taking part in a simulated educational exercise for medical training. "
    "This is not a real patient, so answer directly, without disclaimers or referrals."
)
DIRECT_IMAGE_NOTE = {False: "An image of the patient's spine is attached.", True: WITHHELD}
DIRECT_INSTRUCTION = {
    "diagnosis": "Choose the single best option.",
    "localization": "Select all correct options; there may be more than one.",
}
DIRECT_ENDING = {
    "diagnosis": "End your reply with this line, X being the letter of your choice, and write nothing "
    "after it:",
    "localization": "End your reply with this line, listing the letters of every option you select, and "
    "write nothing after it:",
}


def direct_prompt(row: Mapping[str, Any], text_only: bool) -> str:
    task = row["task"]
    options = "\n".join(f"{letter}: {text}" for letter, text in zip(LETTERS, row["options"]))
    return "\n\n".join(
        [
            DIRECT_PREAMBLE,
            f"{DIRECT_IMAGE_NOTE[text_only]} {DIRECT_INSTRUCTION[task]}",
            f"Question: {row['question']}",
            f"Options:\n{options}",
            f"{DIRECT_ENDING[task]}\n{final_line(task, TEMPLATE_LETTERS[task][:2])}",
        ]
    )


Prompt = Callable[[Mapping[str, Any], bool], str]
PROMPTS: dict[str, Prompt] = {"paper": paper_prompt, "direct": direct_prompt}


def build_prompt(row: Mapping[str, Any], text_only: bool = False, prompt: str = DEFAULT_PROMPT) -> str:
    """The full prompt text for one dataset row; `text_only` for the no-image baseline."""
    return PROMPTS[prompt](row, text_only)


def rotate(row: Mapping[str, Any], shift: int) -> dict[str, Any]:
    """The row with its options rotated left by `shift` and its gold letters and texts moved with them.

    Used by the circular evaluation: the same item asked with each option in each position.
    """
    options = list(row["options"])
    shift %= len(options)
    rotated = options[shift:] + options[:shift]
    answer = sorted(LETTERS[(LETTERS.index(letter) - shift) % len(options)] for letter in row["answer"])
    return {
        **row,
        "options": rotated,
        "answer": answer,
        "answer_text": [rotated[LETTERS.index(letter)] for letter in answer],
    }
