"""A thread's checkpoint history drawn as rows with lanes, like a commit graph.

One row per checkpoint, newest first. Each line of history (a root and the
chain of first children after it) keeps one lane; a fork starts a new lane
for every later branch, so a fork shows as a line leaving its checkpoint
for another lane. Lanes are reused once a line has ended.

Each row carries the SVG pieces that cross it (a dot for the checkpoint,
the lines to its parent and from its children, and the lines of other
branches passing by), so any slice of rows draws on its own: the page
shows one slice at a time. The template draws the pieces in an ``<svg>``
per row; every value in them is a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from keepstone.langgraph.inspect import CheckpointNode

LANE_WIDTH = 14
ROW_HEIGHT = 26
MAX_LANES = 24
"""Lanes drawn apart; a busier history shares the last lane (still in order)."""


@dataclass
class Row:
    """One checkpoint, its lane, and what its row draws."""

    node: CheckpointNode
    lane: int
    latest: bool = False
    """The newest checkpoint of the namespace (what ``get_state`` returns)."""
    branch: bool = False
    """A later child of a fork: the first checkpoint of a new branch."""
    lines: list[tuple[int, int, int, int]] = field(default_factory=list)
    """Line segments ``(x1, y1, x2, y2)`` in the row's box."""

    @property
    def checkpoint_id(self) -> str:
        return str(self.node.checkpoint_id)

    @property
    def fork(self) -> bool:
        return len(self.node.children) > 1

    @property
    def x(self) -> int:
        return lane_x(self.lane)


@dataclass(frozen=True)
class Layout:
    rows: list[Row]
    """Newest first."""
    row_of: dict[str, int]
    """The row of each checkpoint id."""
    lanes: int
    forks: int
    leaves: int

    def draw(self, start: int, stop: int) -> list[Row]:
        """Rows ``start:stop`` with the line segments that cross them."""
        rows = self.rows
        shown = rows[start:stop]
        for row in shown:
            row.lines = []
        mid = ROW_HEIGHT // 2
        for r, row in enumerate(rows):
            for child in row.node.children:
                top = self.row_of[child.checkpoint_id]  # above this row: newer
                x = rows[top].x
                if top >= stop or r < start:
                    continue  # the whole line is off this slice
                if start <= top:  # the child's dot, down to the bottom of its row
                    rows[top].lines.append((x, mid, x, ROW_HEIGHT))
                for k in range(max(top + 1, start), min(r, stop)):  # passing by
                    rows[k].lines.append((x, 0, x, ROW_HEIGHT))
                if r < stop:  # into this dot, from the top of this row
                    row.lines.append((x, 0, row.x, mid))
        return shown


def lane_x(lane: int) -> int:
    return LANE_WIDTH // 2 + 1 + min(lane, MAX_LANES - 1) * LANE_WIDTH


def width(lanes: int) -> int:
    return min(max(lanes, 1), MAX_LANES) * LANE_WIDTH + 2


def layout(roots: Sequence[CheckpointNode]) -> Layout:
    """Rows and lanes for the trees under ``roots`` (one namespace's
    :meth:`ThreadInspector.history <keepstone.langgraph.inspect.ThreadInspector.history>`)."""
    nodes: list[CheckpointNode] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.children)
    nodes.sort(key=lambda n: n.checkpoint_id)  # checkpoint ids grow with time
    when = {n.checkpoint_id: t for t, n in enumerate(nodes)}

    def first_child(node: CheckpointNode) -> CheckpointNode | None:
        if not node.children:
            return None
        return min(node.children, key=lambda c: when[c.checkpoint_id])

    parent_of = {c.checkpoint_id: n for n in nodes for c in n.children}
    line_end: dict[str, int] = {}  # when the line through a checkpoint ends
    for node in reversed(nodes):
        first = first_child(node)
        line_end[node.checkpoint_id] = (
            line_end[first.checkpoint_id] if first is not None else when[node.checkpoint_id]
        )
    lane_of: dict[str, int] = {}
    branches: set[str] = set()
    busy_until: list[int] = []
    for node in nodes:
        parent = parent_of.get(node.checkpoint_id)
        if parent is not None and first_child(parent) is node:
            lane_of[node.checkpoint_id] = lane_of[parent.checkpoint_id]
            continue
        if parent is not None:
            branches.add(node.checkpoint_id)
        start = when[(parent or node).checkpoint_id]
        lane = next((i for i, end in enumerate(busy_until) if end < start), len(busy_until))
        if lane == len(busy_until):
            busy_until.append(0)
        busy_until[lane] = line_end[node.checkpoint_id]
        lane_of[node.checkpoint_id] = lane
    rows = [
        Row(n, lane_of[n.checkpoint_id], latest=i == 0, branch=n.checkpoint_id in branches)
        for i, n in enumerate(reversed(nodes))
    ]
    return Layout(
        rows=rows,
        row_of={row.checkpoint_id: r for r, row in enumerate(rows)},
        lanes=len(busy_until),
        forks=sum(1 for n in nodes if len(n.children) > 1),
        leaves=sum(1 for n in nodes if not n.children),
    )
