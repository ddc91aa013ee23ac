"""Walking a play's task tree for one host: blocks, rescue and always.

``host_tasks`` is a generator that yields ``(task, chain)`` (chain: the enclosing blocks,
outermost first); between two yields the driver runs the task and records a
failure in the HostState. A failure inside a block moves on to its rescue section;
always sections run whatever happened; an unreachable host stops at once. The
strategies drive one such generator per host: linear in lockstep, free at each host's
own pace.
"""

from dataclasses import dataclass


@dataclass
class HostState:
    """What the executor knows about one host during a play."""

    name: str
    failed: bool = False
    unreachable: bool = False
    rescued: int = 0

    @property
    def stopped(self):
        return self.failed or self.unreachable


def is_block(item):
    return hasattr(item, "block") and hasattr(item, "rescue")


def host_tasks(items, state, chain=()):
    """Yield (task, chain) for every task ``state``'s host should run, in order."""
    for item in items:
        if state.stopped:
            return
        if is_block(item):
            yield from _block_tasks(item, state, chain + (item,))
        else:
            yield item, chain


def _block_tasks(block, state, chain):
    yield from host_tasks(block.block, state, chain)
    if state.failed and not state.unreachable and block.rescue:
        state.failed = False
        state.rescued += 1
        yield from host_tasks(block.rescue, state, chain)
    if block.always and not state.unreachable:
        failed = state.failed
        state.failed = False
        yield from host_tasks(block.always, state, chain)
        state.failed = state.failed or failed


def task_order(items, order=None):
    """{id(task): position} in the play's written order (linear runs the earliest first)."""
    order = {} if order is None else order
    for item in items:
        if is_block(item):
            for section in (item.block, item.rescue, item.always):
                task_order(section, order)
        else:
            order.setdefault(id(item), len(order))
    return order
