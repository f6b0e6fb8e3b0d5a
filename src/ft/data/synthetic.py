"""Deterministic synthetic instruction tasks: something learnable offline, with an eval set.

Each task turns a `random.Random` into one (instruction, answer) pair. Same seed, same examples.
For GRPO each example is its prompt and its answer (for the reward functions to check).
For preference training each example also gets a wrong answer (the task's typical mistake) from
its own generator, so the prompts are the same as SFT's for the same seed; for KTO (unpaired) every
other example keeps its right answer, labelled true, and the others their wrong one, labelled false.
"""

import random
import string

from ft.errors import FtError

WORDS = (
    "apple river stone cloud garden window silver planet forest candle mirror bridge shadow ocean "
    "rocket pencil marble violet thunder meadow lantern harbor castle falcon copper breeze jungle "
    "saddle ticket velvet winter summer autumn spring dragon kitten puzzle rabbit island desert "
    "valley summit cobalt amber basket button carpet engine feather goblet helmet jacket kettle "
    "ladder magnet napkin orange pepper quartz ribbon tomato umbrella wallet yogurt zipper"
).split()


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"What is {a} + {b}?", str(a + b)


def _reverse(rng: random.Random) -> tuple[str, str]:
    letters = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 6)))
    return f"Reverse the letters: {letters}", letters[::-1]


def _upper(rng: random.Random) -> tuple[str, str]:
    words = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
    return f"Write in capital letters: {words}", words.upper()


def _sort(rng: random.Random) -> tuple[str, str]:
    numbers = [rng.randint(0, 9) for _ in range(rng.randint(3, 6))]
    return f"Sort these digits: {' '.join(map(str, numbers))}", " ".join(map(str, sorted(numbers)))


TASKS = {"add": _add, "reverse": _reverse, "upper": _upper, "sort": _sort}


# Tool-calling tasks: the question, the call that answers it, and the tool's result, which the final answer
# repeats. Neither answer can be known without the call (a product of two-digit numbers, a random code), so the
# model must learn to call with the right arguments and to answer from the result.
def _multiply(rng: random.Random) -> tuple[str, dict, str]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"What is {a} times {b}?", {"name": "multiply", "arguments": {"a": a, "b": b}}, str(a * b)


def _lookup(rng: random.Random) -> tuple[str, dict, str]:
    key = " ".join(rng.sample(WORDS, 2))
    code = f"{rng.choice(string.ascii_uppercase)}-{rng.randint(1000, 9999)}"
    return f"What is the code of {key}?", {"name": "lookup", "arguments": {"key": key}}, code


def _schema(name: str, description: str, properties: dict) -> dict:
    parameters = {"type": "object", "properties": properties, "required": list(properties)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


TOOLS = [
    _schema("multiply", "Multiply two integers", {"a": {"type": "integer"}, "b": {"type": "integer"}}),
    _schema("lookup", "The code stored under a key", {"key": {"type": "string"}}),
]
TOOL_TASKS = {"multiply": _multiply, "lookup": _lookup}


def _tool_conversation(instruction: str, call: dict, result: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": instruction},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
            {"role": "tool", "name": call["name"], "content": result},
            {"role": "assistant", "content": result},
        ],
        "tools": TOOLS,
    }


def generate(tasks: list[str], num_examples: int, seed: int) -> list[dict]:
    """`num_examples` distinct conversations cycling through `tasks`, in the `messages` format.
    Distinct, so that an eval split carved out of them is truly held out."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for _ in range(20 * num_examples):
        if len(rows) == num_examples:
            return rows
        task = tasks[len(rows) % len(tasks)]
        if task in TOOL_TASKS:
            instruction, call, result = TOOL_TASKS[task](rng)
            row = _tool_conversation(instruction, call, result)
        else:
            instruction, answer = TASKS[task](rng)
            row = {"messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": answer}]}
        if instruction not in seen:
            seen.add(instruction)
            rows.append(row)
    if len(rows) < num_examples:
        raise FtError(
            f"data.synthetic.num_examples={num_examples} is more than the tasks {tasks} have distinct examples "
            f"({len(rows)})"
        )
    return rows


# Each task's typical mistake, systematic so that a preference for the right answer can generalise to
# held-out prompts (a tiny model cannot learn to tell a sum from its neighbour, but it can learn that
# gluing the operands together is wrong).
def _wrong_add(instruction: str, answer: str, rng: random.Random) -> str:
    a, b = instruction.removeprefix("What is ").removesuffix("?").split(" + ")
    return a + b  # the operands concatenated


def _wrong_sort(instruction: str, answer: str, rng: random.Random) -> str:
    digits = answer.split()
    rng.shuffle(digits)
    return " ".join(digits)


WRONG = {
    "add": _wrong_add,
    "reverse": lambda instruction, answer, rng: answer[::-1],  # the letters as given, not reversed
    "upper": lambda instruction, answer, rng: answer.lower(),  # as given, not capitalized
    "sort": _wrong_sort,
}


def generate_preferences(tasks: list[str], num_examples: int, seed: int) -> list[dict]:
    """generate()'s examples as preference pairs: chosen the right answer, rejected a wrong one."""
    rng = random.Random(f"wrong-{seed}")
    rows = []
    for index, row in enumerate(generate(tasks, num_examples, seed)):
        prompt, answer = row["messages"][0], row["messages"][1]["content"]
        wrong = WRONG[tasks[index % len(tasks)]](prompt["content"], answer, rng)
        if wrong == answer:  # a palindrome, digits already in order or all alike, 0 + 0
            wrong = f"{answer} {answer}"
        rows.append(
            {
                "prompt": [prompt],
                "chosen": [{"role": "assistant", "content": answer}],
                "rejected": [{"role": "assistant", "content": wrong}],
            }
        )
    return rows


def generate_unpaired(tasks: list[str], num_examples: int, seed: int) -> list[dict]:
    """generate_preferences()'s pairs as single labelled answers (KTO): every other example gets its
    right answer (label true), the others their wrong one (label false)."""
    rows = []
    for index, pair in enumerate(generate_preferences(tasks, num_examples, seed)):
        good = index % 2 == 0
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen" if good else "rejected"], "label": good})
    return rows


def generate_prompts(tasks: list[str], num_examples: int, seed: int) -> list[dict]:
    """generate()'s examples as prompts for GRPO, with the reference answer the rewards compare against."""
    return [
        {"prompt": row["messages"][:1], "answer": row["messages"][1]["content"]}
        for row in generate(tasks, num_examples, seed)
    ]
