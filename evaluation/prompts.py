"""The SpineBench prompt, in our own words, following the paper's evaluation protocol.

Role preamble, task instruction, question, options as `A: text` lines, then the fixed final line the
answer is read from (`My final option: [X]` / `My final options: [X, Y]`, see extract.py). The image
itself is not part of the text: lighteval's multimodal prompt puts it after the text, as the paper
does. Everything here is a pure function of a dataset row, so a prompt can be rebuilt from the data alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spinebench import LETTERS

PREAMBLE = (
    "You are a spine specialist taking part in a simulated educational exercise for medical training. "
    "This is not a real patient, so answer directly, without disclaimers or referrals."
)
IMAGE_NOTE = {
    False: "An image of the patient's spine is attached.",
    True: "No image is available for this case, but you must still answer: choose from the question "
    "and the options alone.",
}
INSTRUCTION = {
    "diagnosis": "Choose the single best option.",
    "localization": "Select all correct options; there may be more than one.",
}
FINAL_LINE_RULE = {
    "diagnosis": "End your reply with this line, X being the letter of your choice, and write nothing "
    "after it:",
    "localization": "End your reply with this line, listing the letters of every option you select, and "
    "write nothing after it:",
}
TEMPLATE_LETTERS = {"diagnosis": ("X",), "localization": ("X", "Y")}


def final_line(task: str, letters: Sequence[str]) -> str:
    """The final line as a model should write it, e.g. `My final options: [B, D]`."""
    label = "My final options" if task == "localization" else "My final option"
    return f"{label}: [{', '.join(letters)}]"


def build_prompt(row: Mapping[str, Any], text_only: bool = False) -> str:
    """The full prompt text for one dataset row; `text_only` for the no-image baseline."""
    task = row["task"]
    options = "\n".join(f"{letter}: {text}" for letter, text in zip(LETTERS, row["options"]))
    return "\n\n".join(
        [
            PREAMBLE,
            f"{IMAGE_NOTE[text_only]} {INSTRUCTION[task]}",
            f"Question: {row['question']}",
            f"Options:\n{options}",
            f"{FINAL_LINE_RULE[task]}\n{final_line(task, TEMPLATE_LETTERS[task])}",
        ]
    )


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
