"""Compose a run's config from conf/ groups, a recipe and command-line overrides, and validate it.

Overrides are checked against the schema and the config groups *before* Hydra composes, so a typo
gives one line naming the valid choices instead of Hydra's multi-line report. Nothing here imports
torch.
"""

import dataclasses
import difflib
import itertools
import re
import typing
from pathlib import Path

from ft.errors import FtError
from ft.schema import SYNTHETIC_TASKS, TINY_MODEL, FtConfig

CONF_DIR = Path(__file__).resolve().parent / "conf"
RECIPE_DIR = CONF_DIR / "recipe"  # conf/recipe links to the top-level recipes/
README = CONF_DIR.resolve().parent / "README.md"  # in a checkout: src/ft/conf links to the top-level conf/
GROUPS = ("model", "peft", "optim", "data", "training", "logging", "distributed", "recipe")
REFERENCE_START, REFERENCE_END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def group_options(group: str) -> list[str]:
    """The option names of a config group (its YAML files, without extension)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def recipe_descriptions() -> dict[str, str]:
    """Recipe name -> the first line of its header comment."""
    descriptions = {}
    for path in sorted(RECIPE_DIR.glob("*.yaml")):
        comments = (line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#"))
        descriptions[path.stem] = next((c for c in comments if c and not c.startswith("@package")), "")
    return descriptions


def _shown(value) -> str:
    """A value as it is written in YAML and on the command line."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, list):
        return f"[{', '.join(map(_shown, value))}]"
    return str(value)


def _allowed(metadata) -> str:
    if "choices" in metadata:
        return ", ".join(metadata["choices"])
    return ", ".join(f"{symbol} {metadata[name]}" for name, (symbol, _) in BOUNDS.items() if name in metadata)


def reference(cls=FtConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every config key of the schema: (dotted key, default, allowed values, help)."""
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type):
            rows += reference(f.type, f"{prefix}{f.name}.")
        else:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            rows.append((f"{prefix}{f.name}", _shown(default), _allowed(f.metadata), f.metadata["help"]))
    return rows


def reference_markdown() -> str:
    """The README's config reference: a table per section of the schema."""
    def code(text: str) -> str:
        return f"`{text}`" if text else ""

    def escaped(text: str) -> str:  # a bare | ends the table cell, and <word would start an HTML tag
        return text.replace("|", "\\|").replace("<", "\\<")

    lines = ["<!-- generated from src/ft/schema.py by ft.config.write_reference(): edit the schema, not this -->"]
    for section, rows in itertools.groupby(reference(), key=lambda row: row[0].split(".")[0]):
        lines += ["", f"**`{section}`**", "", "| key | default | allowed | meaning |", "| --- | --- | --- | --- |"]
        lines += [f"| `{key}` | {code(default)} | {code(allowed)} | {escaped(help_text)} |"
                  for key, default, allowed, help_text in rows]
    return "\n".join(lines)


def readme_with_reference(readme: str) -> str:
    """`readme` with the text between the config-reference markers replaced by reference_markdown()."""
    before, start, rest = readme.partition(REFERENCE_START)
    _, end, after = rest.partition(REFERENCE_END)
    if not (start and end):
        raise FtError(f"{README} needs the markers {REFERENCE_START} and {REFERENCE_END}")
    return f"{before}{start}\n{reference_markdown()}\n{end}{after}"


def write_reference() -> None:
    """Regenerate the config reference in README.md from the schema."""
    README.write_text(readme_with_reference(README.read_text()))


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def _schema_fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _check_key(key: str) -> None:
    """Fail on a dotted key that is not in the schema (dict-valued fields accept any sub-key)."""
    node, walked = FtConfig, []
    for part in key.split("."):
        if node is dict:
            return
        fields = _schema_fields(node)
        if part not in fields:
            where = ".".join(walked) or "the top level"
            raise FtError(
                f"unknown key '{key}': {_did_you_mean(part, fields)}valid keys in {where}: {', '.join(fields)}"
            )
        walked.append(part)
        node = typing.get_origin(fields[part].type) or fields[part].type
        if not (dataclasses.is_dataclass(node) or node is dict):
            node = None
    if node is not None and dataclasses.is_dataclass(node):
        raise FtError(f"'{key}' is a section, not a value: set one of its keys, e.g. {key}.{next(iter(_schema_fields(node)))}=...")


def check_overrides(overrides: list[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise FtError(f"cannot parse override: {str(e).splitlines()[0]} (syntax: key=value, e.g. training.max_steps=10)")
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra"):
            raise FtError(f"'{key}' is not settable: ft runs Hydra only to compose the config")
        if key in GROUPS:
            options = group_options(key)
            value = override.value()
            if not override.is_delete() and value not in options:
                what = "recipe" if key == "recipe" else f"{key} option"
                raise FtError(
                    f"unknown {what} '{value}': {_did_you_mean(str(value), options)}valid: {', '.join(options)}"
                )
        else:
            _check_key(key)


def _one_line(error: BaseException) -> str:
    messages = []
    while error is not None:  # Hydra wraps the OmegaConf error that says what is wrong
        messages.append(str(error))
        error = error.__cause__
    lines = [line.strip() for m in messages for line in m.splitlines() if line.strip()]
    text = " ".join(line for line in lines if not line.startswith(("full_key", "object_type", "reference_type")))
    return re.sub(r"\s+", " ", text)


def compose(overrides: list[str]) -> FtConfig:
    """Compose and validate the run's config, as typed schema objects."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf, open_dict

    check_overrides(overrides)
    ConfigStore.instance().store(name="ft_schema", node=FtConfig)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="ft"):
            cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    except Exception as e:  # Hydra and OmegaConf report bad YAML / wrong types with many classes
        raise FtError(f"invalid config: {_one_line(e)}") from None
    recipe = cfg.hydra.runtime.choices.get("recipe")
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.recipe = recipe
    cfg = OmegaConf.to_object(cfg)
    validate(cfg)
    return cfg


def validate(cfg: FtConfig) -> None:
    """Rules on values and combinations that the schema's types cannot express. Loads nothing."""
    check_values(cfg)
    from ft import distributed

    distributed.check_config(cfg)

    model = cfg.model
    if model.name_or_path != TINY_MODEL and not Path(model.name_or_path).expanduser().is_dir():
        check_repo_id(model.name_or_path, "model.name_or_path", "a local model directory")

    data = cfg.data
    if data.source == "synthetic" and not data.synthetic.tasks:
        raise FtError(f"data.synthetic.tasks is empty: choose some of {', '.join(SYNTHETIC_TASKS)}")
    if data.source != "synthetic" and not Path(data.source).expanduser().exists():
        if data.source.startswith((".", "/", "~")) or Path(data.source).suffix:
            raise FtError(f"data.source: no such file or directory '{data.source}'")
        check_repo_id(data.source, "data.source", "a local file or directory, or 'synthetic'")

    training = cfg.training
    if training.max_steps <= 0 and training.num_train_epochs <= 0:
        raise FtError("set training.max_steps > 0 or training.num_train_epochs > 0")
    if training.resume not in ("auto", "never") and not Path(training.resume).expanduser().is_dir():
        raise FtError(f"training.resume={training.resume}: not auto, never, or an existing checkpoint directory")
    if training.run_name is not None and (not training.run_name.strip(". ") or Path(training.run_name).name != training.run_name):
        raise FtError(f"training.run_name='{training.run_name}' must be a plain directory name (no '/'): "
                      f"put the parent directory in training.output_dir")
    if cfg.hub.push and not cfg.hub.repo_id:
        raise FtError("hub.push=true needs hub.repo_id=owner/name")
    if cfg.hub.repo_id:
        check_repo_id(cfg.hub.repo_id, "hub.repo_id")
    _validate_techniques(cfg)
    _validate_peft(cfg.peft)


BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
          "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def check_values(node, prefix: str = "") -> None:
    """Every value against its field's `choices` and bounds in the schema."""
    for f in dataclasses.fields(node):
        key, value = f"{prefix}{f.name}", getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            check_values(value, f"{key}.")
            continue
        if value is None:
            continue
        allowed = f.metadata.get("choices")
        for item in value if isinstance(value, list) else [value]:
            if allowed is not None and item not in allowed:
                shown = f"{key}={item}" if not isinstance(value, list) else f"{key}: '{item}'"
                raise FtError(f"{shown} is not valid: {_did_you_mean(str(item), allowed)}choose one of {', '.join(allowed)}")
        for name, (symbol, holds) in BOUNDS.items():
            bound = f.metadata.get(name)
            if bound is not None and not holds(value, bound):
                raise FtError(f"{key} must be {symbol} {bound}, got {value}")


def _validate_techniques(cfg: FtConfig) -> None:
    """Optimizer / packing / callback combinations. Hardware needs (CUDA, flash-attn, Liger) are
    checked by ft.hardware.check_requirements when training starts, so GPU recipes compose anywhere."""
    optim, training, callbacks = cfg.optim, cfg.training, cfg.callbacks
    if optim.name.startswith("galore"):
        if cfg.peft.method != "none":
            raise FtError(
                f"optim.name={optim.name}: GaLore is a full-parameter optimizer and cannot train a PEFT adapter "
                f"(peft.method={cfg.peft.method}): use peft=none, or another optimizer (e.g. optim=adamw_8bit)"
            )
        if not optim.target_modules:
            raise FtError(f"optim.name={optim.name} needs optim.target_modules (the Linear layers to project, e.g. [q_proj, v_proj])")
        if optim.name.endswith("layerwise") and training.gradient_accumulation_steps != 1:
            raise FtError(f"optim.name={optim.name} steps during backward and cannot accumulate gradients: set training.gradient_accumulation_steps=1")
    elif optim.target_modules:
        raise FtError(f"optim.target_modules is for GaLore optimizers only (optim.name={optim.name}): remove it or use optim=galore")
    if training.padding_free and not training.packing:
        raise FtError("training.padding_free=true without packing would not enforce training.max_length: set training.packing=true (bfd packing is padding-free)")
    needs_eval = [name for name, on in (("callbacks.sample_prompts", bool(callbacks.sample_prompts)),
                                        ("callbacks.early_stopping_patience", callbacks.early_stopping_patience is not None)) if on]
    if needs_eval and (training.eval_strategy == "no" or (cfg.data.eval_size == 0 and cfg.data.eval_split is None)):
        raise FtError(f"{needs_eval[0]} acts at evaluation time, but this run never evaluates: set training.eval_strategy=steps and data.eval_size > 0")

def _validate_peft(peft) -> None:
    """PEFT method combinations; architecture rules that need the model's config are in ft.adapters."""
    import importlib.util

    quantized = peft.load_in_4bit or peft.load_in_8bit
    if peft.load_in_4bit and peft.load_in_8bit:
        raise FtError("peft.load_in_4bit and peft.load_in_8bit are both true: choose one (peft=qlora or peft=qlora_8bit)")
    if quantized and importlib.util.find_spec("bitsandbytes") is None:
        raise FtError("a quantized base (peft.load_in_4bit / load_in_8bit) needs bitsandbytes: pip install 'bitsandbytes>=0.45' (or pip install -e '.[quant]')")
    if quantized and peft.method == "none":
        raise FtError("a full fine-tune cannot train a 4-bit/8-bit quantized base: use peft=qlora (an adapter on the quantized base) or set peft.load_in_4bit=false peft.load_in_8bit=false")
    lora_variants = {"use_dora": peft.use_dora, "loraplus_lr_ratio": peft.loraplus_lr_ratio,
                     "init_lora_weights": peft.init_lora_weights if peft.init_lora_weights is not True else None}
    for key, value in lora_variants.items():
        if value and peft.method != "lora":
            raise FtError(f"peft.{key}={value} is a LoRA variant but peft.method={peft.method}: use peft.method=lora or unset it")
    if peft.use_rslora and peft.method not in ("lora", "adalora"):
        raise FtError(f"peft.use_rslora is a LoRA variant but peft.method={peft.method}: use peft.method=lora")
    if str(peft.init_lora_weights).lower().startswith("pissa") and quantized:
        raise FtError("PiSSA needs full-precision base weights to decompose: drop peft.load_in_4bit/load_in_8bit or use peft=qlora")
    if peft.method == "adalora" and peft.target_r > peft.init_r:
        raise FtError(f"AdaLoRA prunes ranks from peft.init_r down to peft.target_r: need target_r <= init_r, got {peft.target_r} and {peft.init_r}")


def check_repo_id(repo_id: str, key: str = "repo_id", alternative: str | None = None) -> None:
    """A well-formed Hub id (owner/name); `alternative` names what else the key may be."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        if alternative:
            raise FtError(f"{key}='{repo_id}' is neither a hub id (owner/name) nor {alternative}") from None
        raise FtError(f"{key}='{repo_id}' is not a valid Hub repo id: use owner/name, e.g. {key}=alice/my-adapter") from None


def to_yaml(cfg: FtConfig) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
