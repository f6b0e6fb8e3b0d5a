"""Which tokens of a conversation are the assistant's: the loss mask of assistant-only training.

A chat template marks them in one of three ways, tried in this order:

    generation markers    the template has `{% generation %}` blocks: TRL masks from them
    TRL training variant  it has none, but TRL ships a training variant of it (with markers and the
                          same rendering): ft swaps it in, so training, the saved tokenizer and
                          `ft generate` all use that one
    prefix rendering      neither: each assistant turn is what rendering the conversation up to and
                          including it adds to the rendering up to the turn before it (the generation
                          prompt included); ft tokenizes the data itself with those masks

Each assistant span ends with the turn's end-of-turn token, so the model learns to stop. A template
that allows none of the three, or a conversation the template refuses to render, stops the run.
"""

import json

from ft.errors import FtError

MARKERS, TRL_VARIANT, PREFIX = "generation markers", "TRL training variant", "prefix rendering"
TOOL_FAMILIES = ("qwen2_5", "qwen3", "qwen3_moe")  # the tiny families whose templates render tool calls (a test probes)


def has_markers(template) -> bool:
    from trl.chat_template_utils import has_generation_markers

    return bool(template) and has_generation_markers(template)


def choose(tokenizer, model_name: str) -> str:
    """The method for this tokenizer's template; swaps in TRL's training variant where there is one."""
    if tokenizer.chat_template is None:
        raise FtError(
            f"{model_name} has no chat template, so conversations cannot be rendered: set model.chat_template, "
            f"or use data.format=text"
        )
    probe = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye"},
    ]
    if has_markers(tokenizer.chat_template):
        masks = tokenizer.apply_chat_template(probe, return_dict=True, return_assistant_tokens_mask=True)
        if len(set(masks["assistant_masks"])) < 2:
            covered = "every token" if 1 in masks["assistant_masks"] else "no token"
            raise FtError(
                f"the {{% generation %}} markers of the chat template of {model_name} enclose {covered} of a "
                f"conversation: put them around each assistant turn's content and end-of-turn token, in "
                f"model.chat_template"
            )
        return MARKERS
    from trl.chat_template_utils import get_training_chat_template

    try:
        variant = get_training_chat_template(tokenizer)
    except ValueError:  # TRL knows no variant of this template
        variant = None
    if variant:
        tokenizer.chat_template = variant
        return TRL_VARIANT
    try:
        spans(tokenizer, probe)
    except FtError as e:
        raise FtError(
            f"the chat template of {model_name} has no {{% generation %}} markers, TRL has no training variant "
            f"of it, and {e}: so ft cannot tell which tokens are the assistant's: set model.chat_template to a "
            f"template with {{% generation %}} markers, or training.assistant_only_loss=false to train on every token"
        ) from None
    return PREFIX


def model_label(cfg) -> str:
    """The model, as messages name it: the tiny one by its family."""
    from ft.config.schema import TINY_MODEL

    name = cfg.model.name_or_path
    return f"the tiny {cfg.model.tiny.family} model" if name == TINY_MODEL else name


def conversation(row) -> tuple[list[dict], list | None]:
    """A converted row's turns and tools as chat templates take them (the dataset keeps tool calls and tool
    schemas as JSON text, ft.data.values.tool_calls)."""
    messages = [{**m, "tool_calls": json.loads(m["tool_calls"])} if m.get("tool_calls") else m for m in row["messages"]]
    return messages, json.loads(row["tools"]) if row.get("tools") else None


def render(tokenizer, messages: list[dict], generation_prompt: bool = False, tools: list | None = None) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
        )
    except TemplateError as e:
        raise FtError(f"the chat template rejects this conversation ({e})") from None


def spans(tokenizer, messages: list[dict], tools: list | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn (prefix rendering)."""
    text = render(tokenizer, messages, tools=tools)
    end_of_turn = tokenizer.eos_token
    found = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True, tools=tools)
        through = render(tokenizer, messages[: i + 1], tools=tools)
        if not (through.startswith(before) and text.startswith(through)):
            raise FtError(f"it renders turn {i + 1} differently once later turns follow (not prefix-preserving)")
        start, end = len(before), len(through)
        last_stop = through.rfind(end_of_turn, start) if end_of_turn else -1
        found.append((start, last_stop + len(end_of_turn) if last_stop >= 0 else end))
    return text, found


def tokenize(tokenizer, row: dict, method: str = PREFIX) -> dict:
    """input_ids and assistant_masks of one converted row's conversation, by `method`; an assistant turn marked not
    to train ("train": false, ft.data.convert) gets no mask, tool results never do."""
    messages, tools = conversation(row)
    trained = [m.get("train", True) for m in messages if m["role"] == "assistant"]
    if method == PREFIX:
        text, assistant = spans(tokenizer, messages, tools)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        kept = [span for span, train in zip(assistant, trained) if train]
        mask = [int(any(s <= start < e for s, e in kept)) for start, _ in encoded["offset_mapping"]]
        return {"input_ids": encoded["input_ids"], "assistant_masks": mask}
    encoded = tokenizer.apply_chat_template(messages, tools=tools, return_dict=True, return_assistant_tokens_mask=True)
    mask = list(encoded["assistant_masks"])
    blocks = [i for i in range(len(mask)) if mask[i] and (i == 0 or not mask[i - 1])]  # where each block starts
    if all(trained):
        return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask}
    if len(blocks) != len(trained):
        raise FtError(
            f"the chat template's {{% generation %}} blocks ({len(blocks)}) are not one per assistant turn "
            f"({len(trained)}), so the turns marked not to train cannot be told apart: merge consecutive assistant "
            f"turns, or drop the train/weight flags"
        )
    for start, train in zip(blocks, trained):
        end = start
        while end < len(mask) and mask[end]:
            mask[end] = int(train)
            end += 1
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask}


def has_untrained_turns(dataset) -> bool:
    """Whether an assistant turn of these conversations is marked not to train (their turns carry "train" only
    when the data has training flags, ft.data.convert)."""
    from ft.data.convert import turn_keys

    if "train" not in turn_keys(dataset):
        return False
    return any(m["role"] == "assistant" and not m["train"] for messages in dataset["messages"] for m in messages)


def check_reasoning(dataset, tokenizer) -> None:
    """Conversations whose assistant turns carry reasoning need a chat template that renders it."""
    from ft.data.convert import turn_keys

    if "reasoning_content" not in turn_keys(dataset):
        return
    if not any(m["reasoning_content"] for messages in dataset["messages"] for m in messages):
        return
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "reasoning_content": "R0"}]
    if "R0" not in render(tokenizer, probe):
        raise FtError(
            "the data's assistant turns carry reasoning (reasoning_content / thinking), which the model's chat "
            "template does not render: set data.reasoning=drop to train on the answers alone, or use a model whose "
            "template puts reasoning in think blocks (e.g. Qwen3)"
        )


def has_tool_calls(dataset) -> bool:
    from ft.data.convert import turn_keys

    if "tool_calls" not in turn_keys(dataset):
        return False
    return any(m["tool_calls"] for messages in dataset["messages"] for m in messages)


def check_tools(dataset, tokenizer) -> None:
    """Conversations with tool calls need a chat template that renders the calls."""
    if not has_tool_calls(dataset):
        return
    call = {"type": "function", "function": {"name": "ft_probe", "arguments": {"x": 1}}}
    probe = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "ft_probe", "content": "R0"},
        {"role": "assistant", "content": "Done"},
    ]
    try:
        rendered = render(tokenizer, probe, tools=[{"type": "function", "function": {"name": "ft_probe"}}])
    except FtError:
        rendered = ""
    if '"x": 1' not in rendered or "R0" not in rendered:
        raise FtError(
            f"the data has tool calls, which the model's chat template does not render: use a model whose template "
            f"does (e.g. Qwen2.5 / Qwen3 Instruct; tiny: model.tiny.family={' / '.join(TOOL_FAMILIES)}), or set "
            f"model.chat_template"
        )


def check_rows(dataset, tokenizer, split: str) -> None:
    """Every conversation renders: a refusal (e.g. a system turn the family has no place for) names its row."""
    check_reasoning(dataset, tokenizer)
    check_tools(dataset, tokenizer)
    for index, row in enumerate(dataset):
        messages, tools = conversation(row)
        try:
            render(tokenizer, messages, tools=tools)
        except FtError as e:
            fix = (
                "drop the system turn (and data.system_prompt) or fold it into the first user turn"
                if any(m["role"] == "system" for m in messages)
                else "make the conversation alternate user/assistant turns"
            )
            raise FtError(f"{split} row {index}: {e}: {fix}") from None


def prepare(cfg, tokenizer, train, evaluation, args):
    """For assistant-only SFT on conversations: choose the method, check every row renders, and with prefix
    rendering, or turns marked not to train, tokenize the data here (TRL then builds labels from its
    assistant_masks)."""
    splits = [(split, dataset) for split, dataset in (("train", train), ("eval", evaluation)) if dataset is not None]
    flagged = any(has_untrained_turns(dataset) for _, dataset in splits)
    tooled = any(has_tool_calls(dataset) for _, dataset in splits)  # kept as JSON text: ft renders them
    if not getattr(args, "assistant_only_loss", False):
        if flagged:
            raise FtError(
                "the data marks turns not to train (train: false / weight: 0), but training.assistant_only_loss=false "
                "trains on every token: set training.assistant_only_loss=true"
            )
        return train, evaluation
    method = choose(tokenizer, model_label(cfg))
    left_out = ", turns marked train: false / weight: 0 left out" if flagged else ""
    print(f"ft: assistant masks: {method}{left_out}", flush=True)
    for split, dataset in splits:
        check_rows(dataset, tokenizer, split)
    if method != PREFIX and not flagged and not tooled:
        return train, evaluation
    args.assistant_only_loss = False  # TRL's flag is for conversational rows; these come tokenized, masks included

    def tokenize_row(row):
        return tokenize(tokenizer, row, method)

    kwargs = dict(remove_columns=train.column_names, desc="ft: tokenizing with the assistant masks")
    return train.map(tokenize_row, **kwargs), evaluation.map(tokenize_row, **kwargs) if evaluation else None
