"""Lightning's callback dispatch, minus the calls of hooks a callback does not define.

Lightning calls every hook of every callback: about six hooks per training step, each run through a
profiler context, an f-string and ``state_key`` (a ``repr`` of a dict for ModelCheckpoint). Most
callbacks define one or two of those hooks; the rest are :class:`~lightning.pytorch.callbacks.Callback`'s
empty methods. With the template's ten callbacks, dispatching took 0.64-0.69 ms per training step
on the 2-core CPU VM (timed inside a fashion_cnn run), 0.27-0.32 ms with this one. The lean dispatch
calls the same hooks with the same arguments, in the same order, and skips only those whose method
is still ``Callback``'s own (empty) one; with no profiler configured (Lightning's PassThroughProfiler,
which records nothing) it also opens no profiler context for the hooks it calls.

Installed process-wide by :func:`litvision.runtime.apply_runtime` (``runtime.lean_callback_dispatch``),
only over the Lightning dispatch it was written against (the signature is checked); anything else
keeps Lightning's.
"""

from __future__ import annotations

import inspect
import logging

from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.trainer import call as lightning_call

log = logging.getLogger(__name__)

LIGHTNING_DISPATCH = lightning_call._call_callback_hooks
_EXPECTED_PARAMETERS = ["trainer", "hook_name", "args", "monitoring_callbacks", "kwargs"]


def lean_call_callback_hooks(trainer, hook_name: str, *args, monitoring_callbacks: bool | None = None, **kwargs):
    """``lightning.pytorch.trainer.call._call_callback_hooks`` without the calls of Callback's empty hooks."""
    if lightning_call.log.isEnabledFor(logging.DEBUG):  # Lightning's own debug line, built only when shown
        lightning_call.log.debug(f"{trainer.__class__.__name__}: calling callback hook: {hook_name}")
    base_hook = getattr(Callback, hook_name, None)
    due = []
    for callback in trainer.callbacks:
        hook = getattr(callback, hook_name)
        # __func__ of a bound method: an override on the class or the instance is never skipped.
        if getattr(hook, "__func__", None) is not base_hook and callable(hook):
            due.append((callback, hook))
    if monitoring_callbacks is not None:  # Lightning's two kinds of monitoring callback, as it filters them
        due = [(cb, hook) for cb, hook in due if isinstance(cb, (EarlyStopping, Checkpoint)) == monitoring_callbacks]
    if not due:
        return
    pl_module = trainer.lightning_module
    if pl_module:  # what self.log inside a hook checks its options against, as in Lightning's dispatch
        previous_fx_name = pl_module._current_fx_name
        pl_module._current_fx_name = hook_name
    profiler = trainer.profiler
    records = type(profiler) is not PassThroughProfiler  # its profile() records nothing: no name, no context
    for callback, hook in due:
        if records:
            with profiler.profile(f"[Callback]{callback.state_key}.{hook_name}"):
                hook(trainer, pl_module, *args, **kwargs)
        else:
            hook(trainer, pl_module, *args, **kwargs)
    if pl_module:
        pl_module._current_fx_name = previous_fx_name


def use_lean_callback_dispatch(enabled: bool) -> bool:
    """Install (or, with False, take back) the lean dispatch; True if it is in use afterwards."""
    if not enabled:
        lightning_call._call_callback_hooks = LIGHTNING_DISPATCH
        return False
    parameters = list(inspect.signature(LIGHTNING_DISPATCH).parameters)
    if parameters != _EXPECTED_PARAMETERS:
        log.info("this Lightning's callback dispatch takes %s, not %s: kept as it is", parameters, _EXPECTED_PARAMETERS)
        return False
    lightning_call._call_callback_hooks = lean_call_callback_hooks
    return True
