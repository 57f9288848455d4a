"""Control ticks in an offline render: one rule for every control loop that
runs on engine frames instead of the wall clock (the model loop, traces).

A tick is taken on the first block boundary at or after its frame, never in
the middle of a block: parameters ramp once per block, so a render cut
mid-block would move the ramps, and a traced or model-driven render would no
longer be the same audio as the blocks a live stream plays. A tick's targets
apply from the next block, as a live control thread's do.

Threads: the one thread that renders.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["render_ticking"]


def render_ticking(
    render: Callable[[int], None],
    frame: int,
    n_frames: int,
    due: Callable[[], int | None],
    tick: Callable[[int], None],
    block_size: int,
) -> int:
    """Render ``n_frames`` from engine ``frame`` through ``render(n)`` (which
    renders blocks of ``block_size`` from the start of each call), calling
    ``tick(frame)`` on the first block boundary at or after the frame
    ``due()`` names (None: no tick pending). ``tick`` must move ``due()`` past
    the frame it is given. Returns the frame reached.

    >>> done = render_ticking(engine.render, engine.frame, 48000,
    ...                       lambda: loop.next_frame, loop.tick, 128)  # doctest: +SKIP
    """
    start = frame
    end = start + int(n_frames)
    while frame < end:
        next_due = due()
        if next_due is not None and frame >= next_due:
            tick(frame)
            next_due = due()
        stop = end
        if next_due is not None:
            blocks = -(-(next_due - start) // block_size)
            stop = min(end, max(start + blocks * block_size, frame + 1))
        render(stop - frame)
        frame = stop
    return frame
