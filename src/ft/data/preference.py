"""The `preference` format: one prompt and two answers to it, `chosen` preferred to `rejected`; and
the `unpaired` format (KTO): one prompt, one `completion`, and a `label`, true for a good answer.

The prompt may be implicit (no prompt column): chosen and rejected are then whole conversations,
and the turns they begin with are the prompt. Plain text (all strings) stays plain text, TRL's
standard form. Anything conversational becomes TRL's conversational form: `prompt` a list of turns
ending with a user turn (a string is one user turn), the answers assistant turns (a string is one turn).
"""

from ft.data import values
from ft.errors import FtError

FIELDS = ("prompt", "chosen", "rejected")
UNPAIRED_FIELDS = ("prompt", "completion", "label")
PROMPT_ROLES = ("system", "user", "assistant")


def from_preference(row: dict, system_prompt: str | None, as_turns: bool = False) -> dict:
    """`as_turns`: conversational even where this row's fields are all text (other rows have turns)."""
    if "prompt" not in row:  # the source has no prompt column: the conversations share it
        row = _split_implicit_prompt(row)
    for name in FIELDS:
        if row.get(name) is None:
            raise FtError(f"'{name}' is missing: every preference row needs a prompt, a chosen and a rejected answer")
    row = {name: text_or_turns(row[name], name) for name in FIELDS}
    for name in FIELDS:
        if is_empty(row[name]):
            raise FtError(f"'{name}' is empty: every preference row needs a prompt, a chosen and a rejected answer")
    if not as_turns and all(isinstance(row[name], str) for name in FIELDS):
        out = {name: row[name] for name in FIELDS}
    else:
        out = {
            "prompt": prompt_turns(row["prompt"], system_prompt),
            "chosen": _answer_turns(row["chosen"], "chosen"),
            "rejected": _answer_turns(row["rejected"], "rejected"),
        }
    if out["chosen"] == out["rejected"]:
        raise FtError("chosen and rejected are the same answer, so there is nothing to prefer: fix or drop the row")
    return out


def _split_implicit_prompt(row: dict) -> dict:
    """chosen and rejected as whole conversations: the turns both begin with are the prompt (TRL's extract_prompt)."""
    from trl.data_utils import extract_prompt

    if any(isinstance(row.get(name), str) for name in ("chosen", "rejected")):
        raise FtError(
            "plain-text chosen/rejected without a prompt column: add the prompt as a column (data.columns.prompt) or "
            "give chosen and rejected as conversations that begin with the same user turns"
        )
    pair = {name: _turns(row.get(name), "assistant", name) for name in ("chosen", "rejected")}
    split = extract_prompt(pair)
    if not split["prompt"]:
        raise FtError("chosen and rejected begin with different turns, so they share no prompt: fix or drop the row")
    return split


def from_unpaired(row: dict, system_prompt: str | None, as_turns: bool = False) -> dict:
    for name in ("prompt", "completion"):
        if row.get(name) is None:
            raise FtError(f"'{name}' is missing: every unpaired row needs a prompt, a completion and a label")
        row = {**row, name: text_or_turns(row[name], name)}
        if is_empty(row[name]):
            raise FtError(f"'{name}' is empty: every unpaired row needs a prompt, a completion and a label")
    if not isinstance(row.get("label"), bool):
        raise FtError(
            f"'label' is {row.get('label')!r}, not true or false: true marks a good completion, false a bad one"
        )
    if not as_turns and isinstance(row["prompt"], str) and isinstance(row["completion"], str):
        return {"prompt": row["prompt"], "completion": row["completion"], "label": row["label"]}
    prompt = prompt_turns(row["prompt"], system_prompt)
    return {"prompt": prompt, "completion": _answer_turns(row["completion"], "completion"), "label": row["label"]}


def text_or_turns(value, name: str):
    """A field that is text (a number or boolean made text) or a list of {role, content} turns."""
    if isinstance(value, (list, tuple)):
        return _turns(value, "user", name)
    return values.text(value, f"'{name}'")


def is_empty(value) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return not value or any(not turn["content"].strip() for turn in value)


def _turns(value, default_role: str, name: str) -> list[dict]:
    """Text as one turn of `default_role`; a list of turns checked and made {role, content} of text."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    turns = []
    for index, turn in enumerate(values.turn_list(value, name)):
        where = f"{name} turn {index + 1}"
        role = values.text(values.field(turn, "role", where), f"{where}'s 'role'")
        turns.append({"role": role, "content": values.content(turn.get("content"), f"{where}'s 'content'")})
    return turns


def prompt_turns(value, system_prompt: str | None) -> list[dict]:
    turns = _turns(value, "user", "prompt")
    roles = [turn["role"] for turn in turns]
    bad = [role for role in roles if role not in PROMPT_ROLES]
    if bad:
        raise FtError(f"unknown role '{bad[0]}' in the prompt: roles must be one of {', '.join(PROMPT_ROLES)}")
    if roles[-1] != "user":
        raise FtError(f"the prompt must end with a user turn, not '{roles[-1]}': the answers reply to it")
    if system_prompt and roles[0] != "system":
        turns = [{"role": "system", "content": system_prompt}, *turns]
    return turns


def _answer_turns(value, name: str) -> list[dict]:
    turns = _turns(value, "assistant", name)
    if any(turn["role"] != "assistant" for turn in turns):
        raise FtError(f"'{name}' must be assistant turns only: put the conversation so far in the prompt")
    return turns
