"""Reward functions for task=grpo and task=rloo (`grpo.rewards`, `rloo.rewards`): ft's built-ins, or the
user's `module:function`.

TRL calls each one with `prompts`, `completions` (strings, or lists of turns for conversational prompts),
`completion_ids` and every other column of the data as a keyword (the synthetic prompts carry `answer`,
the reference answer), and takes one float per completion. Write your own the same way:

    def short(completions, **kwargs):
        return [1.0 if len(text(c)) < 20 else 0.0 for c in completions]
"""

import functools
import importlib
import re

from ft.errors import FtError


def text(completion) -> str:
    """A completion's text: conversational completions are a list holding the assistant turn."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def exact_match(completions, answer=None, **kwargs) -> list[float]:
    """1.0 when the completion is the reference answer of its prompt (whitespace around it aside)."""
    _check_answers("exact_match", answer)
    return [float(text(c).strip() == str(a).strip()) for c, a in zip(completions, answer)]


def _check_answers(name: str, answer) -> None:
    if answer is None:
        raise FtError(f"{name} compares with the data's 'answer' column, which it lacks: add one to every row")


def bare_answer(completions, **kwargs) -> list[float]:
    """1.0 when the completion is one non-empty line: an answer with nothing around it."""
    return [float(len(text(c).strip().splitlines()) == 1) for c in completions]


def _final_number(text_: str) -> str | None:
    """The number a text ends on: after GSM8K's "####" marker when it has one, else its last number."""
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text_.rpartition("####")[2])
    return numbers[-1].replace(",", "") if numbers else None


def last_number(completions, answer=None, **kwargs) -> list[float]:
    """1.0 when the last number of the completion is the reference answer's final number (GSM8K style)."""
    _check_answers("last_number", answer)
    return [
        float(_final_number(text(c)) is not None and _final_number(text(c)) == _final_number(str(a)))
        for c, a in zip(completions, answer)
    ]


BUILTIN = {"exact_match": exact_match, "bare_answer": bare_answer, "last_number": last_number}


def resolve(name: str):
    """The function `name` stands for: a built-in, or `module:function` imported from the user's code."""
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, _, function_name = name.partition(":")
    if not module_name or not function_name:
        raise FtError(f"grpo.rewards: '{name}' is not a built-in reward ({', '.join(BUILTIN)}) nor a module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise FtError(f"grpo.rewards: cannot import {module_name} for {name} ({e}): put it on PYTHONPATH") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise FtError(f"grpo.rewards: module {module_name} has no function {function_name}")
    return function


def check(names: list[str], weights, section: str) -> None:
    """`section.rewards` names at least one function, each resolves, and `section.reward_weights` (if set) has
    one weight per function."""
    if not names:
        raise FtError(
            f"{section}.rewards is empty: name at least one reward function, e.g. {section}.rewards=[exact_match]"
        )
    for name in names:
        resolve(name)
    if weights is not None and len(weights) != len(names):
        raise FtError(
            f"{section}.reward_weights has {len(weights)} weights for {len(names)} reward functions: "
            f"give one weight per function, or none"
        )


def check_groups(training, num_generations: int, section: str) -> None:
    """Each prompt's `num_generations` completions are scored as one group: they must share a batch."""
    batch = training.per_device_train_batch_size * training.gradient_accumulation_steps
    for name, size in (
        ("per_device_train_batch_size * gradient_accumulation_steps", batch),
        ("per_device_eval_batch_size", training.per_device_eval_batch_size),
    ):
        if size % num_generations:
            raise FtError(
                f"training.{name}={size} is not a multiple of {section}.num_generations={num_generations}: "
                f"each prompt's {num_generations} completions must be in the same batch"
            )


def load(names: list[str]) -> list:
    """The reward functions, each stopping the run with one line naming it when it raises."""
    return [_named_on_error(name, resolve(name)) for name in names]


def try_on(functions: list, row: dict) -> None:
    """Call each reward function once, as TRL will, on `row`'s prompt with an empty completion: a function
    that raises stops the run now, before training, with the run directory removed again."""
    conversational = not isinstance(row["prompt"], str)
    completion = [{"role": "assistant", "content": ""}] if conversational else ""
    columns = {key: [value] for key, value in row.items() if key != "prompt"}
    for function in functions:
        function(
            prompts=[row["prompt"]],
            completions=[completion],
            completion_ids=[[]],
            **columns,
            trainer_state=None,
            log_extra=lambda *args, **kwargs: None,
            log_metric=lambda *args, **kwargs: None,
        )


def _named_on_error(name: str, function):
    @functools.wraps(function)  # TRL logs each reward under the function's __name__
    def reward(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as e:
            reason = (str(e).splitlines() or [""])[0]
            raise FtError(f"reward function {name} failed: {type(e).__name__}: {reason}") from None

    return reward
