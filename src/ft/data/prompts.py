"""The `prompts` format (task=grpo): a prompt to generate answers to, and any other columns, which TRL
hands to the reward functions as keywords (the synthetic prompts carry `answer`, the reference answer).

A string prompt stays plain text; a list of turns is TRL's conversational form, ending with a user turn. In a
file that mixes the two, a string prompt becomes one user turn (ft.data.convert.has_turns).
"""

from ft.data import preference
from ft.errors import FtError


def from_prompts(row: dict, system_prompt: str | None, as_turns: bool = False) -> dict:
    prompt = row.get("prompt")
    if prompt is None or preference.is_empty(prompt := preference.text_or_turns(prompt, "prompt")):
        raise FtError("'prompt' is missing or empty: every row needs a prompt to generate answers to")
    plain = isinstance(prompt, str) and not as_turns
    return {**row, "prompt": prompt if plain else preference.prompt_turns(prompt, system_prompt)}
