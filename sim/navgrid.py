"""Free floor: what every object covers on the floor, and a coarse grid to plan paths on.

A :class:`Footprint` is an object's outline on the floor (a rotated rectangle or a
disc); :func:`clearance` is the distance from points to the nearest of them. A
:class:`NavGrid` samples that clearance on 5 cm cells once per episode and answers the
questions of placement and of the scripted expert:

- ``turn_safe``: cells where the robot can turn in place (its turning circle, with a
  margin, touches nothing); paths run through them only;
- the approach: turn-safe cells within ``approach_m`` of the target from which the
  straight drive to it is clear (the robot's width, with a margin);
- :meth:`NavGrid.reachable`: the start's 8-connected region of turn-safe cells holds an
  approach cell;
- :meth:`NavGrid.waypoint`: the farthest point along the shortest grid path (toward the
  approach) that the robot can reach in a straight line from where it stands.

A grid value bounds the clearance of any point in its cell from below once half a cell
diagonal is taken off (distance is 1-Lipschitz), which is how straight segments are
checked on the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_MOVES = ((0, 1, 1.0), (0, -1, 1.0), (1, 0, 1.0), (-1, 0, 1.0),
          (1, 1, math.sqrt(2)), (1, -1, math.sqrt(2)), (-1, 1, math.sqrt(2)),
          (-1, -1, math.sqrt(2)))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Footprint:
    """An object's outline on the floor: a rectangle turned by ``yaw_rad`` about its
    centre, or a disc when ``radius_m`` > 0. Metres."""

    x_m: float
    y_m: float
    half_x_m: float = 0.0
    half_y_m: float = 0.0
    yaw_rad: float = 0.0
    radius_m: float = 0.0


def clearance(points: np.ndarray, footprints: tuple[Footprint, ...]) -> np.ndarray:
    """Distance from each point [N, 2] to the nearest footprint (0 inside one): [N]."""
    pts = np.asarray(points, float).reshape(-1, 2)
    best = np.full(len(pts), np.inf)
    boxes = [f for f in footprints if f.radius_m <= 0]
    discs = [f for f in footprints if f.radius_m > 0]
    if boxes:
        b = np.array([(f.x_m, f.y_m, math.cos(f.yaw_rad), math.sin(f.yaw_rad), f.half_x_m,
                       f.half_y_m) for f in boxes])  # [B, 6]
        dx = pts[:, None, 0] - b[None, :, 0]  # [N, B]
        dy = pts[:, None, 1] - b[None, :, 1]
        lx = np.abs(b[:, 2] * dx + b[:, 3] * dy) - b[:, 4]  # [N, B] in the box's own frame
        ly = np.abs(-b[:, 3] * dx + b[:, 2] * dy) - b[:, 5]
        best = np.minimum(best, np.hypot(np.maximum(lx, 0), np.maximum(ly, 0)).min(axis=1))
    if discs:
        c = np.array([(f.x_m, f.y_m, f.radius_m) for f in discs])  # [D, 3]
        gap = np.hypot(pts[:, None, 0] - c[:, 0], pts[:, None, 1] - c[:, 1]) - c[:, 2]  # [N, D]
        best = np.minimum(best, np.maximum(gap, 0).min(axis=1))
    return best


def separated(fp: Footprint, others: tuple[Footprint, ...], gap_m: float) -> bool:
    """True when ``fp`` keeps more than ``gap_m`` from every one of ``others`` (rectangle
    pairs by separating axes with ``fp`` grown by ``gap_m``: a little stricter at corners)."""
    if not others:
        return True
    boxes = tuple(o for o in others if o.radius_m <= 0)
    discs = np.array([(o.x_m, o.y_m, o.radius_m) for o in others if o.radius_m > 0]).reshape(-1, 3)
    if fp.radius_m > 0:
        centre = np.array([fp.x_m, fp.y_m])
        if boxes and clearance(centre, boxes)[0] <= fp.radius_m + gap_m:
            return False
        gaps = np.hypot(discs[:, 0] - fp.x_m, discs[:, 1] - fp.y_m) - discs[:, 2] - fp.radius_m
        return bool((gaps > gap_m).all())
    if len(discs) and (clearance(discs[:, :2], (fp,)) <= discs[:, 2] + gap_m).any():
        return False
    if not boxes:
        return True
    b = np.array([(o.x_m, o.y_m, o.yaw_rad, o.half_x_m, o.half_y_m) for o in boxes])  # [B, 5]
    a_axes = np.array([[math.cos(fp.yaw_rad), math.sin(fp.yaw_rad)],
                       [-math.sin(fp.yaw_rad), math.cos(fp.yaw_rad)]])  # [2, 2]
    b_axes = np.stack([np.stack([np.cos(b[:, 2]), np.sin(b[:, 2])], axis=1),
                       np.stack([-np.sin(b[:, 2]), np.cos(b[:, 2])], axis=1)], axis=1)  # [B, 2, 2]
    offset = b[:, :2] - (fp.x_m, fp.y_m)  # [B, 2]
    a_half = np.array([fp.half_x_m, fp.half_y_m]) + gap_m  # [2]
    axes = np.concatenate([np.broadcast_to(a_axes, (len(b), 2, 2)), b_axes], axis=1)  # [B, 4, 2]
    reach_a = np.abs(axes @ a_axes.T) @ a_half  # [B, 4]
    reach_b = (np.abs(np.einsum("bkd,bjd->bkj", axes, b_axes)) * b[:, None, 3:5]).sum(axis=2)
    apart = np.abs(np.einsum("bkd,bd->bk", axes, offset)) > reach_a + reach_b  # [B, 4]
    return bool(apart.any(axis=1).all())


def corners(fp: Footprint) -> np.ndarray:
    """A rectangle's four corners, or a disc's bounding square's: [4, 2]."""
    if fp.radius_m > 0:
        r = fp.radius_m
        return np.array([(r + fp.x_m, r + fp.y_m), (fp.x_m - r, r + fp.y_m),
                         (fp.x_m - r, fp.y_m - r), (r + fp.x_m, fp.y_m - r)])
    c, s = math.cos(fp.yaw_rad), math.sin(fp.yaw_rad)
    local = np.array([(1, 1), (-1, 1), (-1, -1), (1, -1)]) * (fp.half_x_m, fp.half_y_m)
    return np.asarray(local @ np.array([[c, s], [-s, c]]) + (fp.x_m, fp.y_m))


def segment_points(a: np.ndarray, b: np.ndarray, step_m: float = 0.02) -> np.ndarray:
    """Points from ``a`` to ``b`` (both included), at most ``step_m`` apart: [n, 2]."""
    n = max(2, math.ceil(float(np.linalg.norm(b - a)) / step_m) + 1)
    return np.asarray(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))


def segment_clear(a: np.ndarray, b: np.ndarray, footprints: tuple[Footprint, ...],
                  margin_m: float) -> bool:
    """True when every point of the segment a-b lies more than ``margin_m`` from every
    footprint (exact, for the few segments a step checks)."""
    return bool(clearance(segment_points(a, b), footprints).min() > margin_m)


class NavGrid:
    """Clearance on a grid over the room ``[-half_x, half_x] x [-half_y, half_y]``."""

    def __init__(self, half_x_m: float, half_y_m: float, footprints: tuple[Footprint, ...], *,
                 turn_clear_m: float, pass_clear_m: float, cell_m: float = 0.05) -> None:
        # turn_clear_m, pass_clear_m: the least clearance of a point where the robot may
        # turn in place (its turning radius plus a margin) and of one it may drive over
        # straight (half its width plus a margin).
        self.cell_m, self.turn_clear_m, self.pass_clear_m = cell_m, turn_clear_m, pass_clear_m
        self.nx = max(1, round(2 * half_x_m / cell_m))
        self.ny = max(1, round(2 * half_y_m / cell_m))
        self.origin = np.array([-half_x_m, -half_y_m])  # [2] corner of cell (0, 0)
        ix, iy = np.meshgrid(np.arange(self.nx), np.arange(self.ny))  # [ny, nx] each
        self.centres = self.origin + (np.stack([ix, iy], axis=-1) + 0.5) * cell_m  # [ny, nx, 2]
        walls = np.minimum(half_x_m - np.abs(self.centres[..., 0]),
                           half_y_m - np.abs(self.centres[..., 1]))  # [ny, nx]
        objects = clearance(self.centres.reshape(-1, 2), footprints).reshape(self.ny, self.nx)
        self.clear = np.minimum(walls, objects)  # [ny, nx] metres
        self._slack = cell_m * math.sqrt(0.5)  # half a cell's diagonal
        self.turn_safe = self.clear - self._slack >= turn_clear_m  # [ny, nx] bool
        self._field: np.ndarray | None = None
        self._goal_for: tuple[float, float] | None = None

    # --- cells and points -------------------------------------------------------------

    def cell(self, xy: np.ndarray) -> tuple[int, int]:
        """(row, column) of the cell holding point ``xy``, clipped to the grid."""
        i, j = np.floor((np.asarray(xy) - self.origin) / self.cell_m).astype(int)
        return int(np.clip(j, 0, self.ny - 1)), int(np.clip(i, 0, self.nx - 1))

    def lower_bound(self, points: np.ndarray) -> np.ndarray:
        """A lower bound of each point's clearance [N, 2] -> [N] (0 outside the room)."""
        pts = np.asarray(points, float).reshape(-1, 2)
        ij = np.floor((pts - self.origin) / self.cell_m).astype(int)  # [N, 2] column, row
        inside = ((ij >= 0) & (ij < (self.nx, self.ny))).all(axis=1)
        ij = np.clip(ij, 0, (self.nx - 1, self.ny - 1))
        return np.asarray(np.where(inside, self.clear[ij[:, 1], ij[:, 0]] - self._slack, 0.0))

    # --- the approach and reachability ------------------------------------------------

    def approach(self, target: np.ndarray, approach_m: float = 1.2) -> np.ndarray:
        """Turn-safe cells within ``approach_m`` of the target with a clear straight drive
        to it: [ny, nx] bool."""
        near = np.linalg.norm(self.centres - target, axis=-1) <= approach_m
        rows, cols = np.nonzero(near & self.turn_safe)
        goal = np.zeros((self.ny, self.nx), bool)
        if len(rows) == 0:
            return goal
        starts = self.centres[rows, cols]  # [C, 2]
        t = np.linspace(0.0, 1.0, math.ceil(approach_m / (self.cell_m / 2)) + 1)  # [K]
        pts = starts[:, None, :] + t[None, :, None] * (target - starts)[:, None, :]  # [C, K, 2]
        ok = (self.lower_bound(pts.reshape(-1, 2)).reshape(len(rows), -1)
              > self.pass_clear_m).all(axis=1)  # [C]
        goal[rows[ok], cols[ok]] = True
        return goal

    def reachable(self, start: np.ndarray, target: np.ndarray) -> bool:
        """True when turn-safe cells connect the start (its cell or one next to it: a grid
        value only bounds the start's own clearance) to an approach cell."""
        row, col = self.cell(start)
        r0, c0 = max(0, row - 1), max(0, col - 1)
        near = self.turn_safe[r0: row + 2, c0: col + 2]
        if not near.any():
            return False
        _, labels = cv2.connectedComponents(self.turn_safe.astype(np.uint8), connectivity=8)
        ours = labels[r0: row + 2, c0: col + 2][near]  # [k] regions next to the start
        return bool(np.isin(labels[self.approach(target)], ours).any())

    # --- paths ------------------------------------------------------------------------

    def field(self, target: np.ndarray) -> np.ndarray:
        """Path length (metres, through turn-safe cells) from each cell to the nearest
        approach cell of ``target``; inf where there is no path: [ny, nx]."""
        key = (float(target[0]), float(target[1]))
        if self._field is not None and self._goal_for == key:
            return self._field
        free = self.turn_safe
        dist = np.where(self.approach(target) & free, 0.0, np.inf)
        padded = np.full((self.ny + 2, self.nx + 2), np.inf)
        while True:  # Bellman-Ford sweeps over the 8 neighbours until nothing shortens
            before = dist.copy()
            for dr, dc, cost in _MOVES:
                padded[1:-1, 1:-1] = dist
                moved = padded[1 + dr: self.ny + 1 + dr, 1 + dc: self.nx + 1 + dc]
                dist = np.where(free, np.minimum(dist, moved + cost * self.cell_m), np.inf)
            if np.array_equal(dist, before):
                break
        self._field, self._goal_for = dist, key
        return dist

    def path(self, start: np.ndarray, target: np.ndarray, max_cells: int = 2000) -> np.ndarray:
        """Cell centres from the start's cell down the field to an approach cell: [n, 2]
        (empty when the start's cell, and every cell next to it, has no path)."""
        dist = self.field(target)
        row, col = self.cell(start)
        if not np.isfinite(dist[row, col]):  # drifted off the free cells: the best neighbour
            r0, r1 = max(0, row - 3), min(self.ny, row + 4)
            c0, c1 = max(0, col - 3), min(self.nx, col + 4)
            window = dist[r0:r1, c0:c1] + np.linalg.norm(self.centres[r0:r1, c0:c1] - start,
                                                         axis=-1)
            if not np.isfinite(window).any():
                return np.zeros((0, 2))
            wr, wc = np.unravel_index(int(np.argmin(window)), window.shape)
            row, col = r0 + int(wr), c0 + int(wc)
        cells = [(row, col)]
        for _ in range(max_cells):
            if dist[row, col] == 0.0:
                break
            best = (float(dist[row, col]), row, col)
            for dr, dc, _cost in _MOVES:
                r, c = row + dr, col + dc
                if 0 <= r < self.ny and 0 <= c < self.nx and dist[r, c] < best[0]:
                    best = (float(dist[r, c]), r, c)
            if best[1:] == (row, col):
                break
            _, row, col = best
            cells.append((row, col))
        return np.array([self.centres[r, c] for r, c in cells])  # [n, 2]

    def line_ok(self, start: np.ndarray, ends: np.ndarray, line_clear_m: float,
                skip_m: float = 0.15) -> np.ndarray:
        """For each end [P, 2]: True when the straight line from ``start`` to it keeps
        ``line_clear_m`` of clearance (on the grid's lower bound). Points within
        ``skip_m`` of the start are not checked: the robot is there already. [P] bool."""
        ends = np.asarray(ends, float).reshape(-1, 2)
        ahead = np.linalg.norm(ends - start, axis=1)  # [P]
        t = np.linspace(0.0, 1.0, math.ceil(float(ahead.max()) / (self.cell_m / 2)) + 2)  # [K]
        pts = start + t[None, :, None] * (ends - start)[:, None, :]  # [P, K, 2]
        near = t[None, :] * ahead[:, None] < skip_m  # [P, K]
        bound = self.lower_bound(pts.reshape(-1, 2)).reshape(len(ends), -1)
        return np.asarray(((bound >= line_clear_m) | near).all(axis=1))

    def waypoint(self, start: np.ndarray, target: np.ndarray, line_clear_m: float,
                 min_ahead_m: float = 0.15) -> np.ndarray | None:
        """The farthest point of :meth:`path` at least ``min_ahead_m`` ahead that the
        robot reaches from ``start`` in a straight line with ``line_clear_m`` of clearance
        (see :meth:`line_ok`); the first point that far when none is; None when there is
        no path."""
        cells = self.path(start, target)
        if len(cells) == 0:
            return None
        ahead = np.linalg.norm(cells - start, axis=1)  # [P]
        ok = self.line_ok(start, cells, line_clear_m, min_ahead_m) & (ahead >= min_ahead_m)
        if ok.any():
            return np.asarray(cells[np.nonzero(ok)[0][-1]])
        beyond = np.nonzero(ahead >= min_ahead_m)[0]  # nothing in sight: the next cell ahead
        return np.asarray(cells[beyond[0] if len(beyond) else -1])
