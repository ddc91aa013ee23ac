"""Run one function per host in parallel, ``forks`` at a time, never letting one host's
failure stop the others."""

from concurrent.futures import ThreadPoolExecutor, as_completed


def run_parallel(items, fn, forks, on_done=None):
    """Call ``fn(item)`` for every item; return {item: (value, exception)} in item order.

    ``on_done(item, value, exception)`` is called as each finishes (from the caller's
    thread), so a CLI can show hosts as they answer.
    """
    outcomes = {}
    if not items:
        return outcomes
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(items)))) as pool:
        futures = {pool.submit(fn, item): item for item in items}
        for future in as_completed(futures):
            item = futures[future]
            error = future.exception()
            value = None if error else future.result()
            outcomes[item] = (value, error)
            if on_done:
                on_done(item, value, error)
    return {item: outcomes[item] for item in items}
