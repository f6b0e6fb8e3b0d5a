"""MoE experts in 4-bit under QLoRA.

transformers 5 fuses each layer's experts into 3-D parameters (`gate_up_proj` [E, 2I, H], `down_proj`
[E, H, I]), and bitsandbytes quantizes nn.Linear layers only, so a QLoRA base kept its experts, most
of an MoE's weights, in full precision. ft stores each fused expert parameter as bitsandbytes 4-bit
blocks (`quantize_4bit`, the run's NF4/FP4 and double quant) inside a tensor that every torch
operation sees as the dequantized weight: each forward (and each backward that needs it) dequantizes
the whole 3-D tensor. Autograd saves the 4-bit tensor itself for the backward, so no dequantized copy
is kept in between; with LoRA on the experts, PEFT's W + BA is a new full-precision tensor that autograd
does keep until the backward (activation checkpointing drops it), as it would for unquantized experts.

Why a tensor subclass and not bitsandbytes' `replace_parameter_4bit` (a torch parametrization):
PEFT 0.21's LoRA on parameters (`ParamWrapper`, what LoRA on fused experts is) does not compose with
a parameter that is already parametrized: suffix target names never match it, its forward asks the
uint8 original to require grad, and its single-adapter proxy is never removed again. To PEFT the
subclass is a plain frozen parameter of the expert module, so its LoRA targets it as usual.
"""

import torch
from torch.utils._pytree import tree_map_only


class Packed4bitExperts(torch.Tensor):
    """A frozen weight held as bitsandbytes 4-bit blocks (`packed` and its `quant_state`); to torch it
    is the full-precision tensor of the original shape and dtype, dequantized where an operation reads
    it."""

    @staticmethod
    def __new__(cls, packed, quant_state, dtype=None):
        return torch.Tensor._make_wrapper_subclass(
            cls, quant_state.shape, dtype=dtype or quant_state.dtype, device=packed.device, requires_grad=False
        )

    def __init__(self, packed, quant_state, dtype=None):
        self.packed = packed
        self.quant_state = quant_state

    __torch_function__ = torch._C._disabled_torch_function_impl  # results are plain tensors, not this class

    def dequantize(self) -> torch.Tensor:
        import bitsandbytes.functional as bnb

        return bnb.dequantize_4bit(self.packed, self.quant_state).to(self.dtype)

    def stored_bytes(self) -> int:
        """What the weight occupies: the packed blocks and their quantization statistics."""
        state = self.quant_state
        tensors = [self.packed, state.absmax, state.code]
        if state.nested:
            tensors += [state.state2.absmax, state.state2.code]
        return sum(t.numel() * t.element_size() for t in tensors)

    def _copy(self, device=None, dtype=None):
        """The same 4-bit weight (its blocks moved to `device`), read as `dtype`."""
        if device is None or torch.device(device) == self.device:
            return Packed4bitExperts(self.packed, self.quant_state, dtype or self.dtype)
        state = _copy_state(self.quant_state, device)
        return Packed4bitExperts(self.packed.to(device), state, dtype or self.dtype)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.ops.aten.detach.default, torch.ops.aten.alias.default):  # param.data, Parameter(...)
            return args[0]._copy()
        if func is torch.ops.aten._to_copy.default and not kwargs.get("layout") and len(args) == 1:
            return args[0]._copy(kwargs.get("device"), kwargs.get("dtype"))
        if func is torch.ops.aten.set_.source_Tensor and args[0] is args[1]:  # torch's parametrize: X.set_(X)
            return args[0]
        if _writes_to(func, cls, args, kwargs):  # it would update a dequantized copy, and the change be lost
            raise RuntimeError(
                f"{func} would write to a 4-bit MoE expert weight: dequantize it first (ft.models.experts.dequantize)"
            )
        args, kwargs = tree_map_only(cls, Packed4bitExperts.dequantize, (args, kwargs))
        return func(*args, **kwargs)

    def __repr__(self):
        return f"Packed4bitExperts(shape={tuple(self.shape)}, dtype={self.dtype}, {self.quant_state.quant_type})"


def _writes_to(func, cls, args, kwargs) -> bool:
    """Whether the operation writes in place to one of its `cls` arguments (e.g. `param.data += delta`)."""
    for i, argument in enumerate(func._schema.arguments):
        value = args[i] if i < len(args) else kwargs.get(argument.name)
        if isinstance(value, cls) and argument.alias_info is not None and argument.alias_info.is_write:
            return True
    return False


def _copy_state(state, device):
    import copy

    moved = copy.deepcopy(state)  # QuantState.to moves in place
    moved.to(device)
    return moved


def quantize_module(module, quant_type: str, double_quant: bool) -> None:
    """Each 3-D parameter of `module` (one fused expert block) replaced by its 4-bit form."""
    import bitsandbytes.functional as bnb

    for name, param in list(module.named_parameters(recurse=False)):
        if param.dim() != 3 or isinstance(param, Packed4bitExperts):
            continue
        packed, state = bnb.quantize_4bit(param.data, compress_statistics=double_quant, quant_type=quant_type)
        # a Parameter (not a bare tensor) so PEFT's parametrization hands it back as one after each forward
        setattr(module, name, torch.nn.Parameter(Packed4bitExperts(packed, state), requires_grad=False))


def quantize(model, expert_modules: list[str], quant_type: str, double_quant: bool) -> None:
    for name in expert_modules:
        quantize_module(model.get_submodule(name), quant_type, double_quant)


def dequantize(model) -> int:
    """Every 4-bit expert weight of `model` back to a plain frozen parameter (before a merge). Returns
    how many there were."""
    count = 0
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if isinstance(param, Packed4bitExperts):
                module._parameters[name] = torch.nn.Parameter(param.dequantize(), requires_grad=False)
                count += 1
    return count


def skip_in_ddp_broadcast(model) -> None:
    """DDP broadcasts every parameter of rank 0 into each rank's copy at the start, which cannot write
    into 4-bit experts; nor need it: every rank quantized the same weights the same way. (DeepSpeed
    broadcasts into a uint8 view of each parameter, for these a dequantized copy that is dropped.)"""
    from torch.nn.parallel import DistributedDataParallel

    names = [name for name, param in model.named_parameters() if isinstance(param, Packed4bitExperts)]
    if names:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)


def quantized(model) -> list:
    """The model's 4-bit expert weights."""
    return [p for p in model.parameters() if isinstance(p, Packed4bitExperts)]
