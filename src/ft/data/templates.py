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

from ft.errors import FtError

MARKERS, TRL_VARIANT, PREFIX = "generation markers", "TRL training variant", "prefix rendering"


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


def render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except TemplateError as e:
        raise FtError(f"the chat template rejects this conversation ({e})") from None


def spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn (prefix rendering)."""
    text = render(tokenizer, messages)
    end_of_turn = tokenizer.eos_token
    found = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True)
        through = render(tokenizer, messages[: i + 1])
        if not (through.startswith(before) and text.startswith(through)):
            raise FtError(f"it renders turn {i + 1} differently once later turns follow (not prefix-preserving)")
        start, end = len(before), len(through)
        last_stop = through.rfind(end_of_turn, start) if end_of_turn else -1
        found.append((start, last_stop + len(end_of_turn) if last_stop >= 0 else end))
    return text, found


def tokenize(tokenizer, messages: list[dict]) -> dict:
    """input_ids and assistant_masks of one conversation, by prefix rendering."""
    text, assistant = spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(s <= start < e for s, e in assistant)) for start, _ in encoded["offset_mapping"]]
    return {"input_ids": encoded["input_ids"], "assistant_masks": mask}


def check_rows(dataset, tokenizer, split: str) -> None:
    """Every conversation renders: a refusal (e.g. a system turn the family has no place for) names its row."""
    for index, messages in enumerate(dataset["messages"]):
        try:
            render(tokenizer, messages)
        except FtError as e:
            fix = (
                "drop the system turn (and data.system_prompt) or fold it into the first user turn"
                if any(m["role"] == "system" for m in messages)
                else "make the conversation alternate user/assistant turns"
            )
            raise FtError(f"{split} row {index}: {e}: {fix}") from None


def prepare(cfg, tokenizer, train, evaluation, args):
    """For assistant-only SFT on conversations: choose the method, check every row renders, and with
    prefix rendering tokenize the data here (TRL then builds labels from its assistant_masks)."""
    if not getattr(args, "assistant_only_loss", False):
        return train, evaluation
    method = choose(tokenizer, model_label(cfg))
    print(f"ft: assistant masks: {method}", flush=True)
    for split, dataset in (("train", train), ("eval", evaluation)):
        if dataset is not None:
            check_rows(dataset, tokenizer, split)
    if method != PREFIX:
        return train, evaluation
    args.assistant_only_loss = False  # TRL's flag is for conversational rows; these come tokenized, masks included

    def tokenize_row(row):
        return tokenize(tokenizer, row["messages"])

    kwargs = dict(remove_columns=["messages"], desc="ft: tokenizing by prefix rendering")
    return train.map(tokenize_row, **kwargs), evaluation.map(tokenize_row, **kwargs) if evaluation else None
